//! The rooms of one server and the connections in them: routes messages, applies each room's
//! effects, and cuts off connections that cannot keep up. One lock guards both maps so a change
//! and the messages it causes are ordered the same for everyone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use hearth_proto::{ErrorCode, PeerId, Role, ServerMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::options::ServerOptions;
use crate::room::{Effect, Entrant, Placement, Room};
use crate::token::{Claims, TokenKeys};

/// What a connection's writer sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A JSON message; `relayed_at` is when the `signal` it carries was read, for the latency
    /// histogram.
    Text {
        text: Utf8Bytes,
        relayed_at: Option<Instant>,
    },
    /// A heartbeat ping.
    Ping,
    /// A close frame, after which the writer stops.
    Close { code: u16, reason: &'static str },
}

impl Outbound {
    /// A message that is not a relayed `signal`.
    pub(crate) fn message(text: Utf8Bytes) -> Outbound {
        Outbound::Text {
            text,
            relayed_at: None,
        }
    }
}

/// WebSocket close code for "policy violation", used with an error code as the reason.
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "going away", used on shutdown.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;

/// The parts of a connection the hub needs to reach it.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    pub done: CancellationToken,
}

#[derive(Debug)]
struct Link {
    conn: ConnHandle,
    room: String,
    role: Role,
    sub: String,
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, Room>,
    peers: HashMap<PeerId, Link>,
}

/// Shared state of one server.
#[derive(Debug)]
pub struct Hub {
    pub(crate) options: ServerOptions,
    pub(crate) keys: TokenKeys,
    pub(crate) metrics: Metrics,
    /// Cancelled when the server starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Hub {
    pub(crate) fn new(options: ServerOptions) -> Hub {
        Hub {
            keys: TokenKeys::new(&options.secret),
            options,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still consistent enough to serve
        // other rooms; refusing everyone would take the whole server down for one bug.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Puts a verified connection into its room. Returns its peer id and whether it waits.
    pub(crate) fn join(
        &self,
        claims: &Claims,
        conn: ConnHandle,
    ) -> Result<(PeerId, bool), ErrorCode> {
        let now = unix_ms();
        let fresh = PeerId(uuid::Uuid::new_v4().simple().to_string());
        let mut state = self.lock();
        let capacity = self.options.limits.max_participants;
        let room = state
            .rooms
            .entry(claims.room.clone())
            .or_insert_with(|| Room::new(&claims.room, capacity));
        let mut out = Vec::new();
        let entrant = Entrant {
            peer: fresh.clone(),
            sub: claims.sub.clone(),
            name: claims.name.clone(),
            role: claims.role,
        };
        let placed = match room.join(entrant, now, &mut out) {
            Ok(p) => p,
            Err(code) => {
                if room.is_empty() {
                    state.rooms.remove(&claims.room);
                }
                return Err(code);
            }
        };
        let (peer, waiting) = match placed {
            Placement::Call => (fresh, false),
            Placement::Waiting(id) => (id, true),
        };
        let link = Link {
            conn,
            room: claims.room.clone(),
            role: claims.role,
            sub: claims.sub.clone(),
        };
        if let Some(old) = state.peers.insert(peer.clone(), link) {
            // The same patient reconnected while the server still held the old socket.
            self.close_conn(
                &old.conn,
                ErrorCode::Replaced,
                ErrorCode::Replaced.default_message(),
            );
        }
        self.apply(&mut state, out, now);
        self.metrics.rooms.set(state.rooms.len() as f64);
        Ok((peer, waiting))
    }

    /// The link of `peer` if `conn` still owns it. A connection that was replaced or denied
    /// keeps running until its close is written; what it sends meanwhile is dropped.
    fn owned<'a>(state: &'a State, peer: &PeerId, conn: u64) -> Option<&'a Link> {
        state.peers.get(peer).filter(|l| l.conn.id == conn)
    }

    /// Relays a pre-serialised `signal` from `from` to `to`.
    pub(crate) fn signal(
        &self,
        from: &PeerId,
        conn: u64,
        to: &PeerId,
        text: Utf8Bytes,
        read_at: Instant,
    ) -> Result<(), ErrorCode> {
        let mut state = self.lock();
        let Some(link) = Self::owned(&state, from, conn) else {
            return Ok(());
        };
        let room = state.rooms.get(&link.room).ok_or(ErrorCode::Internal)?;
        room.check_signal(from, to)?;
        let target = state.peers.get(to).ok_or(ErrorCode::UnknownPeer)?;
        let outbound = Outbound::Text {
            text,
            relayed_at: Some(read_at),
        };
        if !self.deliver(&target.conn, outbound) {
            self.cut(&mut state, to.clone(), unix_ms());
        }
        Ok(())
    }

    /// A clinician admits (`deny == None`) or denies (`Some(reason)`) a waiting peer.
    pub(crate) fn decide(
        &self,
        by: &PeerId,
        conn: u64,
        peer: &PeerId,
        deny: Option<Option<String>>,
    ) -> Result<(), ErrorCode> {
        let now = unix_ms();
        let mut state = self.lock();
        let Some(link) = Self::owned(&state, by, conn) else {
            return Ok(());
        };
        let room_name = link.room.clone();
        let room = state.rooms.get_mut(&room_name).ok_or(ErrorCode::Internal)?;
        let mut out = Vec::new();
        let admitted = deny.is_none();
        match deny {
            None => room.admit(by, peer, &mut out)?,
            Some(reason) => room.deny(by, peer, reason, &mut out)?,
        }
        info!(by = %by, peer = %peer, admitted, "waiting room decision");
        self.apply(&mut state, out, now);
        Ok(())
    }

    /// The peer left on purpose (`leave`) or its connection ended (`gone`).
    pub(crate) fn depart(&self, peer: &PeerId, conn: u64, on_purpose: bool) {
        let now = unix_ms();
        let mut state = self.lock();
        if Self::owned(&state, peer, conn).is_none() {
            return;
        }
        let Some(link) = state.peers.remove(peer) else {
            return;
        };
        let mut out = Vec::new();
        if let Some(room) = state.rooms.get_mut(&link.room) {
            if on_purpose {
                room.leave(peer, &mut out);
            } else {
                room.disconnect(peer, now, &mut out);
            }
            if room.is_empty() {
                state.rooms.remove(&link.room);
            }
        }
        if !self.shutdown.is_cancelled() {
            self.apply(&mut state, out, now);
        }
        self.metrics.rooms.set(state.rooms.len() as f64);
    }

    /// Forgets waiting-room places held longer than the grace period.
    pub(crate) fn sweep(&self) {
        let now = unix_ms();
        let grace =
            u64::try_from(self.options.limits.waiting_grace.as_millis()).unwrap_or(u64::MAX);
        let mut state = self.lock();
        let mut out = Vec::new();
        for room in state.rooms.values_mut() {
            room.expire(now, grace, &mut out);
        }
        state.rooms.retain(|_, room| !room.is_empty());
        self.apply(&mut state, out, now);
        self.metrics.rooms.set(state.rooms.len() as f64);
    }

    /// Queues `outbound` for `conn`. False when its queue is full: the client is too slow.
    fn deliver(&self, conn: &ConnHandle, outbound: Outbound) -> bool {
        match conn.tx.try_send(outbound) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The connection is ending; its task cleans up.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Queues an error and a close frame; the connection's task ends after writing them.
    pub(crate) fn close_conn(&self, conn: &ConnHandle, code: ErrorCode, message: &str) {
        self.metrics.error(code);
        let error = ServerMessage::Error {
            code,
            message: message.to_owned(),
        };
        let delivered = encode(&error).is_some_and(|text| {
            self.deliver(conn, Outbound::message(text))
                && self.deliver(
                    conn,
                    Outbound::Close {
                        code: CLOSE_POLICY,
                        reason: code.as_str(),
                    },
                )
        });
        if !delivered {
            conn.done.cancel();
        }
    }

    /// Disconnects a peer whose outbound queue is full, and tells its room.
    fn cut(&self, state: &mut State, peer: PeerId, now: u64) {
        warn!(peer = %peer, "outbound queue full; disconnecting slow client");
        let Some(link) = state.peers.remove(&peer) else {
            return;
        };
        link.conn.done.cancel();
        let mut out = Vec::new();
        if let Some(room) = state.rooms.get_mut(&link.room) {
            room.disconnect(&peer, now, &mut out);
            if room.is_empty() {
                state.rooms.remove(&link.room);
            }
        }
        self.apply(state, out, now);
    }

    /// Delivers a room's effects, and the effects of cutting off anyone too slow to take them.
    fn apply(&self, state: &mut State, effects: Vec<Effect>, now: u64) {
        let mut slow = Vec::new();
        for effect in effects {
            let (peer, msg) = match effect {
                Effect::Send(peer, msg) => (peer, msg),
                Effect::Welcome { peer, peers } => {
                    let Some(link) = state.peers.get(&peer) else {
                        continue;
                    };
                    debug!(peer = %peer, "welcome");
                    let welcome = ServerMessage::Welcome {
                        peer: peer.clone(),
                        room: link.room.clone(),
                        role: link.role,
                        peers,
                        ice_servers: self.options.ice.servers_for(&link.sub, now / 1000),
                    };
                    (peer, welcome)
                }
                Effect::Close {
                    peer,
                    code,
                    message,
                } => {
                    if let Some(link) = state.peers.remove(&peer) {
                        self.close_conn(&link.conn, code, &message);
                    }
                    continue;
                }
            };
            let Some(link) = state.peers.get(&peer) else {
                continue;
            };
            if let Some(text) = encode(&msg)
                && !self.deliver(&link.conn, Outbound::message(text))
            {
                slow.push(peer);
            }
        }
        for peer in slow {
            self.cut(state, peer, now);
        }
    }

    /// Number of connections that are in a room or waiting.
    pub fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }
}

/// Serialises a server message; these types always serialise, so a failure is logged, not sent.
pub(crate) fn encode(msg: &ServerMessage) -> Option<Utf8Bytes> {
    match serde_json::to_string(msg) {
        Ok(s) => Some(Utf8Bytes::from(s)),
        Err(e) => {
            warn!(error = %e, "could not serialise a server message");
            None
        }
    }
}
