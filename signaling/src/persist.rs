//! The hub's writes to the store, off the hub's lock: audit records and tablets' last-seen times
//! and checks go through an unbounded channel to one task that saves them in batches (one
//! transaction each), so a slow disk never holds up relaying.

use std::sync::Arc;
use std::time::Duration;

use hearth_proto::care::{AuditRecord, CheckReport, Rules, Tablet};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::store::{Store, StoreError};

/// One write for the store.
#[derive(Debug)]
pub(crate) enum Write {
    /// Append this record (its `seq` is assigned when saved).
    Audit(AuditRecord),
    /// A resident's tablet connected or disconnected at `at`.
    TabletSeen {
        sub: String,
        name: String,
        room: String,
        at: u64,
    },
    /// A resident's tablet reported a check.
    TabletCheck {
        sub: String,
        name: String,
        room: String,
        report: CheckReport,
    },
    /// Answer once everything sent before has been saved.
    Flush(oneshot::Sender<()>),
}

/// The most writes saved in one transaction.
const BATCH: usize = 512;
/// Tries per batch before its records are given up (and logged as lost).
const ATTEMPTS: u32 = 3;

fn fresh(sub: &str, name: &str, room: &str, at: u64) -> Tablet {
    Tablet {
        sub: sub.to_owned(),
        name: name.to_owned(),
        room: room.to_owned(),
        online_since: None,
        last_seen: at,
        check: None,
        rules: Rules::default(),
    }
}

fn save(store: &Store, batch: &mut [Write]) -> Result<(), StoreError> {
    let mut audit: Vec<AuditRecord> = batch
        .iter()
        .filter_map(|w| match w {
            Write::Audit(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    store.append_audit(&mut audit)?;
    for w in batch.iter() {
        match w {
            Write::TabletSeen {
                sub,
                name,
                room,
                at,
            } => {
                store.update_tablet(
                    sub,
                    || fresh(sub, name, room, *at),
                    |t| {
                        t.name.clone_from(name);
                        t.room.clone_from(room);
                        t.last_seen = t.last_seen.max(*at);
                    },
                )?;
            }
            Write::TabletCheck {
                sub,
                name,
                room,
                report,
            } => store.put_check(sub, || fresh(sub, name, room, report.at), *report)?,
            Write::Audit(_) | Write::Flush(_) => {}
        }
    }
    Ok(())
}

/// Saves what arrives on `rx` until every sender is gone.
pub(crate) async fn run(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let (flushes, mut batch): (Vec<Write>, Vec<Write>) = batch
            .into_iter()
            .partition(|w| matches!(w, Write::Flush(_)));
        let mut attempt = 0;
        while !batch.is_empty() {
            attempt += 1;
            let store = store.clone();
            let mut owned = std::mem::take(&mut batch);
            let result = tokio::task::spawn_blocking(move || {
                let r = save(&store, &mut owned);
                (r, owned)
            })
            .await;
            match result {
                Ok((Ok(()), _)) => break,
                Ok((Err(e), back)) if attempt < ATTEMPTS => {
                    warn!(error = %e, attempt, "could not save to the store; retrying");
                    batch = back;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Ok((Err(e), back)) => {
                    error!(error = %e, lost = back.len(), "could not save to the store; records lost");
                    break;
                }
                Err(e) => {
                    error!(error = %e, "the store writer failed");
                    break;
                }
            }
        }
        for w in flushes {
            if let Write::Flush(tx) = w {
                let _ = tx.send(());
            }
        }
    }
}
