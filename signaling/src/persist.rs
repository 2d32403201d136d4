//! The hub's writes to the store, off the hub's lock: audit records and tablets' last-seen times
//! and checks go through an unbounded channel to one task that saves them in batches, each in
//! one transaction (all or nothing, so a retry never records twice), so a slow disk never holds
//! up relaying. The channel grows at most as fast as clients may send (their rate limit).
//!
//! Every change goes through [`Changes`]: applied here at once by one process, or appended to
//! the shared log by servers sharing rooms through NATS and applied when this server's copy
//! reads it back (so every copy applies the same changes in the same order).

use std::sync::Arc;
use std::time::Duration;

use hearth_proto::care::AuditRecord;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::backplane::{Backplane, Control, StoreEntry};
use crate::store::{Store, StoreError, StoreOp, TabletChange};

/// How long a change waits for this server's copy to apply it from the shared log.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long a starting server waits for its copy to catch up with the shared log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// How long a read waits to learn where the shared log ends before reading the copy as it is.
const END_WAIT: Duration = Duration::from_secs(1);
/// How long the copy waits for more of the shared log before applying a batch smaller than
/// [`BATCH`]. Every node applies every node's changes, each arriving alone; a transaction's
/// commit costs far more than a record in it, so gathering them for a moment takes most of that
/// cost off (measured: a node's CPU per join through NATS, docs/BENCHMARKS.md). A change waits
/// this much longer before [`Changes::make`] returns.
const GATHER: Duration = Duration::from_millis(5);

/// Makes changes to the store, shared or not.
#[derive(Debug)]
pub(crate) struct Changes {
    store: Arc<Store>,
    backplane: Arc<dyn Backplane>,
    /// The last position of the shared log applied to the local copy.
    applied: watch::Receiver<u64>,
    /// Withdrawals and rules read from the shared log, for the node to enforce (taken once, by
    /// the hub). The core-NATS broadcast that also carries them is only the fast path: it is
    /// not replayed to a node that was reconnecting when it went out.
    notices: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
}

impl Changes {
    /// Starts applying the shared log (if the backplane keeps one) to `store` and waits until
    /// the copy has caught up with it, so a starting server enforces every withdrawal.
    pub(crate) async fn start(
        store: Arc<Store>,
        backplane: Arc<dyn Backplane>,
    ) -> Result<Changes, StoreError> {
        let after = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.applied())
                .await
                .map_err(|e| StoreError::Shared(e.to_string()))??
        };
        let (applied_tx, applied) = watch::channel(after);
        let (tx, rx) = mpsc::unbounded_channel();
        let (notices_tx, notices) = mpsc::unbounded_channel();
        backplane.read_store(after, tx);
        tokio::spawn(apply_log(store.clone(), rx, applied_tx, notices_tx));
        let end = backplane
            .store_end()
            .await
            .map_err(|e| StoreError::Shared(e.to_string()))?;
        let changes = Changes {
            store,
            backplane,
            applied,
            notices: std::sync::Mutex::new(Some(notices)),
        };
        if end > after {
            info!(from = after, to = end, "catching up with the shared store");
            changes.until_applied(end, CATCH_UP_WAIT).await?;
        }
        Ok(changes)
    }

    /// Makes one change; returns once this server's copy has it.
    pub(crate) async fn make(&self, op: StoreOp) -> Result<(), StoreError> {
        match self.backplane.append_store(&op).await {
            Ok(Some(pos)) => self.until_applied(pos, APPLY_WAIT).await,
            Ok(None) => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.apply(&[(0, op)]))
                    .await
                    .map_err(|e| StoreError::Shared(e.to_string()))?
            }
            Err(e) => Err(StoreError::Shared(e.to_string())),
        }
    }

    /// Waits until this server's copy has applied every change in the shared log as it stands
    /// now: a read after it sees every change any server had made before (a staff member's
    /// next request may reach another server through the load balancer). At once when there
    /// is no shared log. While NATS cannot say where the log ends, the copy is read as it is
    /// (staff still see invitations and the audit trail, as of the outage).
    pub(crate) async fn caught_up(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(END_WAIT, self.backplane.store_end()).await {
            Ok(Ok(end)) => self.until_applied(end, APPLY_WAIT).await,
            Ok(Err(e)) => {
                warn!(error = %e, "the shared store's end is unknown; reading this copy as it is");
                Ok(())
            }
            Err(_) => {
                warn!("NATS did not say where the shared store ends; reading this copy as it is");
                Ok(())
            }
        }
    }

    /// Withdrawals and rules as this server's copy applies them from the shared log, in log
    /// order; `None` after the first call.
    pub(crate) fn take_notices(&self) -> Option<mpsc::UnboundedReceiver<Control>> {
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    async fn until_applied(&self, pos: u64, wait: Duration) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(wait, applied.wait_for(|a| *a >= pos)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Shared(format!(
                "this server's copy did not reach position {pos} within {} s",
                wait.as_secs()
            ))),
        }
    }
}

/// Applies the shared log to the local copy, in batches of what arrives within [`GATHER`], and says how far
/// it got. A batch that fails is tried again: positions make it apply once.
async fn apply_log(
    store: Arc<Store>,
    mut rx: mpsc::UnboundedReceiver<StoreEntry>,
    applied: watch::Sender<u64>,
    notices: mpsc::UnboundedSender<Control>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |(pos, _)| *pos);
        let batch = Arc::new(batch);
        loop {
            let (store, b) = (store.clone(), batch.clone());
            match tokio::task::spawn_blocking(move || store.apply(&b)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    error!(error = %e, "could not apply the shared store's changes; retrying")
                }
                Err(e) => error!(error = %e, "the store task failed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        applied.send_replace(last);
        for (_, op) in batch.iter() {
            notice(op, &notices);
        }
    }
}

/// Passes on what in `op` the node enforces itself (an unread receiver is harmless).
fn notice(op: &StoreOp, notices: &mpsc::UnboundedSender<Control>) {
    match op {
        StoreOp::Revoke { id, .. } => {
            let _ = notices.send(Control::Revoke { inv: id.clone() });
        }
        StoreOp::Rules { sub, rules, .. } => {
            let _ = notices.send(Control::Rules {
                sub: sub.clone(),
                rules: rules.clone(),
            });
        }
        StoreOp::Batch { .. } | StoreOp::Invite { .. } | StoreOp::Redeem { .. } => {}
    }
}

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

fn batch_op(batch: &[Write]) -> StoreOp {
    let mut audit: Vec<AuditRecord> = Vec::new();
    let mut tablets: Vec<TabletChange> = Vec::new();
    for w in batch {
        match w {
            Write::Audit(r) => audit.push(r.clone()),
            Write::Tablet(change) => tablets.push(change.clone()),
            Write::Flush(_) => {}
        }
    }
    StoreOp::Batch { audit, tablets }
}

/// Saves what arrives on `rx` until every sender is gone.
pub(crate) async fn run(changes: Arc<Changes>, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let (flushes, batch): (Vec<Write>, Vec<Write>) = batch
            .into_iter()
            .partition(|w| matches!(w, Write::Flush(_)));
        if !batch.is_empty() {
            let op = batch_op(&batch);
            for attempt in 1..=ATTEMPTS {
                match changes.make(op.clone()).await {
                    Ok(()) => break,
                    // Nothing was saved (one transaction): trying again records nothing twice.
                    Err(e @ StoreError::Db(_)) if attempt < ATTEMPTS => {
                        warn!(error = %e, attempt, "could not save to the store; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                    // The shared log retries by itself (stored once); after that, or when the
                    // change is in the log but not yet applied here, another try could record
                    // it twice.
                    Err(e) => {
                        error!(error = %e, records = batch.len(), "could not save to the store");
                        break;
                    }
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
