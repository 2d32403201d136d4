//! The hub's writes to the store, off the hub's lock: audit records and tablets' last-seen times
//! and checks go through an unbounded channel to one task that saves them in batches, each in
//! one transaction (all or nothing, so a retry never records twice), so a slow disk never holds
//! up relaying. The channel grows at most as fast as clients may send (their rate limit).

use std::sync::Arc;
use std::time::Duration;

use hearth_proto::care::AuditRecord;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::store::{Store, StoreError, TabletChange};

/// One write for the store.
#[derive(Debug)]
pub(crate) enum Write {
    /// Append this record (its `seq` is assigned when saved).
    Audit(AuditRecord),
    /// A resident's tablet was seen or reported a check.
    Tablet(TabletChange),
    /// Answer once everything sent before has been saved.
    Flush(oneshot::Sender<()>),
}

/// The most writes saved in one transaction.
const BATCH: usize = 512;
/// Tries per batch before its records are given up (and logged as lost).
const ATTEMPTS: u32 = 3;

fn save(store: &Store, batch: &[Write]) -> Result<(), StoreError> {
    let mut audit: Vec<AuditRecord> = Vec::new();
    let mut tablets: Vec<TabletChange> = Vec::new();
    for w in batch {
        match w {
            Write::Audit(r) => audit.push(r.clone()),
            Write::Tablet(change) => tablets.push(change.clone()),
            Write::Flush(_) => {}
        }
    }
    store.save_batch(&mut audit, &tablets)
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
            let owned = std::mem::take(&mut batch);
            let result = tokio::task::spawn_blocking(move || {
                let r = save(&store, &owned);
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
