//! The one-process backplane: a published event is applied at once, in the caller's task, so a
//! room's log order is the order of the node's own lock; broadcasts go straight back to the node.

use std::collections::HashSet;
use std::sync::{OnceLock, Weak};

use super::{Backplane, BackplaneError, Control, Sink, Snapshot};
use crate::replica::{Event, NodeId};

/// Rooms live in this process only.
#[derive(Default)]
pub(crate) struct Memory {
    sink: OnceLock<Weak<dyn Sink>>,
    node: OnceLock<NodeId>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

impl Memory {
    fn sink(&self) -> Option<std::sync::Arc<dyn Sink>> {
        self.sink.get().and_then(Weak::upgrade)
    }
}

#[async_trait::async_trait]
impl Backplane for Memory {
    fn attach(&self, sink: Weak<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    fn shared(&self) -> bool {
        false
    }

    async fn publish(&self, room: &str, origin: &str, event: Event) -> Result<(), BackplaneError> {
        let _ = self.publish_now(room, None, origin, event);
        Ok(())
    }

    fn publish_now(
        &self,
        room: &str,
        slot: Option<usize>,
        origin: &str,
        event: Event,
    ) -> Option<Event> {
        if let Some(sink) = self.sink() {
            // Position 0: the node numbers a room's events itself.
            sink.event(room, slot, 0, origin, event);
        }
        None
    }

    async fn snapshot(&self, _room: &str) -> Result<Option<Snapshot>, BackplaneError> {
        Ok(None)
    }

    async fn save_snapshot(&self, _room: &str, _snapshot: Snapshot) -> Result<(), BackplaneError> {
        Ok(())
    }

    async fn follow(&self, _room: &str, _after: u64) -> Result<(), BackplaneError> {
        Ok(())
    }

    async fn unfollow(&self, _room: &str) {}

    async fn broadcast(&self, msg: Control) -> Result<(), BackplaneError> {
        if let Some(sink) = self.sink() {
            sink.control(msg);
        }
        Ok(())
    }

    async fn heartbeat(&self, node: &str, _draining: bool) -> Result<(), BackplaneError> {
        let _ = self.node.set(node.into());
        Ok(())
    }

    async fn live_nodes(&self) -> Option<HashSet<NodeId>> {
        Some(self.node.get().cloned().into_iter().collect())
    }

    async fn append_store(
        &self,
        _op: &crate::store::StoreOp,
    ) -> Result<Option<u64>, BackplaneError> {
        Ok(None)
    }

    async fn store_end(&self) -> Result<u64, BackplaneError> {
        Ok(0)
    }

    fn read_store(&self, _after: u64, _tx: tokio::sync::mpsc::UnboundedSender<super::StoreEntry>) {}

    async fn tablets_online(&self) -> Option<Vec<(String, crate::hub::OnlineTablet)>> {
        None
    }

    async fn close(&self) {}
}
