//! What nodes share: each room's log of events (ordered, the same for every node that follows
//! the room), snapshots of rooms, broadcasts to every node, and which nodes are alive.
//!
//! [`memory::Memory`] is the default: one process, the log is applied as it is published and
//! nothing else is installed. [`nats::Nats`] keeps the logs in NATS JetStream so several
//! processes behind a load balancer share rooms (`--nats-url`).

pub(crate) mod memory;
pub(crate) mod nats;

use std::collections::HashSet;
use std::sync::Weak;

use hearth_proto::care::{CheckReport, Rules};
use serde::{Deserialize, Serialize};

use crate::replica::{Event, NodeId};
use crate::store::StoreOp;

/// A change of the store with its position in the shared log.
pub(crate) type StoreEntry = (u64, StoreOp);

/// Why the shared state could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// Connecting to NATS, or a NATS request, failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// A stored item could not be read.
    #[error("a stored item could not be read: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A message for every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub(crate) enum Control {
    /// An invitation was withdrawn.
    Revoke { inv: String },
    /// A resident's rules changed.
    Rules { sub: String, rules: Rules },
    /// Staff ask a resident's tablets for a check.
    RunCheck { sub: String, request: String },
    /// A tablet answered a check request.
    CheckAnswer {
        request: String,
        sub: String,
        report: CheckReport,
    },
}

/// Where a backplane hands what it receives: the node.
pub(crate) trait Sink: Send + Sync {
    /// The next event of `room`'s log, at position `pos` (increasing within the log), first
    /// published by node `origin`.
    /// `slot` is where the node said the room is when it published the event here (see
    /// [`Backplane::publish_now`]), handed back as it was.
    fn event(&self, room: &str, slot: Option<usize>, pos: u64, origin: &str, event: Event);
    /// A broadcast.
    fn control(&self, msg: Control);
    /// Residents' tablets connected to this node, for another node asking.
    fn tablets_online(&self) -> Vec<(String, crate::hub::OnlineTablet)>;
}

/// One room's state as a snapshot holds it.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The log position it includes.
    pub pos: u64,
    /// The serialised state.
    pub state: Vec<u8>,
}

/// How the nodes share rooms.
#[async_trait::async_trait]
pub(crate) trait Backplane: Send + Sync + std::fmt::Debug {
    /// Where events and broadcasts go. Called once, before anything is published.
    fn attach(&self, sink: Weak<dyn Sink>);
    /// True when the logs outlive this process (a node may then forget a room it does not
    /// serve and read it again later); false when this process's copy is the only one.
    fn shared(&self) -> bool;
    /// Appends `event` to `room`'s log. Followers get it in log order.
    async fn publish(&self, room: &str, origin: &str, event: Event) -> Result<(), BackplaneError>;
    /// Appends `event` to `room`'s log at once, when this backplane can without waiting (the
    /// one-process log, applied in the caller's task); gives the event back when it cannot, for
    /// [`Backplane::publish`]. The relay's hot path then makes no future for each message.
    /// `slot` is the node's hint of where it keeps the room, for [`Sink::event`].
    fn publish_now(
        &self,
        _room: &str,
        _slot: Option<usize>,
        _origin: &str,
        event: Event,
    ) -> Option<Event> {
        Some(event)
    }
    /// The latest snapshot of `room`, if any.
    async fn snapshot(&self, room: &str) -> Result<Option<Snapshot>, BackplaneError>;
    /// Saves a snapshot of `room` unless a newer one is saved.
    async fn save_snapshot(&self, room: &str, snapshot: Snapshot) -> Result<(), BackplaneError>;
    /// Starts handing `room`'s events after position `after` to the sink, in order.
    async fn follow(&self, room: &str, after: u64) -> Result<(), BackplaneError>;
    /// Stops handing `room`'s events.
    async fn unfollow(&self, room: &str);
    /// Sends a message to every node, this one included.
    async fn broadcast(&self, msg: Control) -> Result<(), BackplaneError>;
    /// Says this node is alive (and whether it is draining).
    async fn heartbeat(&self, node: &str, draining: bool) -> Result<(), BackplaneError>;
    /// The nodes alive now, or `None` while this node cannot tell (its own link to the shared
    /// state is new or broken): nobody must be declared lost on a partial view.
    async fn live_nodes(&self) -> Option<HashSet<NodeId>>;
    /// Appends a change of the store to the shared log and returns its position; `None` when
    /// this backplane keeps no such log (one process applies its own changes).
    async fn append_store(&self, op: &StoreOp) -> Result<Option<u64>, BackplaneError>;
    /// The shared store log's last position now (0 when it is empty or there is none).
    async fn store_end(&self) -> Result<u64, BackplaneError>;
    /// Hands the shared store log after `after` to `tx`, in order, until `tx` closes.
    fn read_store(&self, after: u64, tx: tokio::sync::mpsc::UnboundedSender<StoreEntry>);
    /// Residents' tablets connected to any node, as every live node answers; `None` when
    /// there are no other nodes to ask or they cannot be asked now.
    async fn tablets_online(&self) -> Option<Vec<(String, crate::hub::OnlineTablet)>>;
    /// Stops background work (heartbeats, followers) before the process exits.
    async fn close(&self);
}
