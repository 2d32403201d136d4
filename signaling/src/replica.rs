//! One room's shared state, changed only by the events of the room's log: the room (call and
//! waiting room) and its sessions, each with the numbered stream of messages it was sent and
//! the last of them kept for replay. Every node that follows a room applies the same events in
//! the same order to its own copy and gets the same state and the same numbered messages, so
//! any node can deliver a session's messages, take up a session that was connected elsewhere
//! (resume), or write a snapshot. Nothing here reads a clock or a socket: time comes with the
//! events, and what must happen comes out as [`Out`]s for the node to carry out.

use std::collections::{BTreeMap, VecDeque};

use hearth_proto::care::{AuditRecord, CheckReport, Rules};
use hearth_proto::{ErrorCode, PeerId, Role, ServerMessage};
use litemap::LiteMap;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::warn;

use crate::ice::IceOptions;
use crate::resume::ResumeKeys;
use crate::room::{Capacity, Effect, Entrant, Placement, Room};
use crate::store::TabletChange;

/// A server process, by the id it picked at start.
pub(crate) type NodeId = std::sync::Arc<str>;

/// One connection: the node it is on and its number there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConnRef {
    pub node: NodeId,
    pub conn: u64,
}

/// The numbers first: a room's sessions are searched by connection on every message, and
/// comparing the number alone spares reading each node id (one node's ids are one `Arc`, which
/// compares by address first).
impl PartialEq for ConnRef {
    fn eq(&self, other: &ConnRef) -> bool {
        self.conn == other.conn && self.node == other.node
    }
}

impl Eq for ConnRef {}

/// JSON text shared by the replay buffer and the sockets without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub Utf8Bytes);

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Text(Utf8Bytes::from(s)))
    }
}

/// Part of a client's message (a `signal`'s `data`), written and read as the part's text. One
/// found in a received message ([`Part::find`]) stays in that message's bytes rather than being
/// copied out of them; one read from the shared log holds its own.
#[derive(Clone)]
pub(crate) struct Part {
    whole: Utf8Bytes,
    range: std::ops::Range<usize>,
}

impl Part {
    /// The part of `whole` that `find` picks out of its text (a slice of it), with what else
    /// `find` gives; `whole` back when it finds nothing.
    pub(crate) fn find<T>(
        whole: Utf8Bytes,
        find: impl for<'a> FnOnce(&'a str) -> Option<(&'a str, T)>,
    ) -> Result<(Part, T), Utf8Bytes> {
        let (range, other) = match find(whole.as_str()) {
            None => return Err(whole),
            Some((part, other)) => match span(&whole, part) {
                Some(range) => (range, other),
                // Not a slice of the text after all: a copy.
                None => return Ok((Part::from(part), other)),
            },
        };
        Ok((Part { whole, range }, other))
    }

    pub(crate) fn as_str(&self) -> &str {
        self.whole.get(self.range.clone()).unwrap_or_default()
    }
}

/// Where `part`, a slice of `whole`, lies in it; `None` when it is not a slice of it.
fn span(whole: &str, part: &str) -> Option<std::ops::Range<usize>> {
    // Addresses compared as numbers: std has no safe `offset_from` for this.
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    whole
        .get(range.clone())
        .filter(|same| std::ptr::eq(*same, part))
        .map(|_| range)
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Part").field(&self.as_str()).finish()
    }
}

impl From<&str> for Part {
    fn from(text: &str) -> Part {
        Part::from(text.to_owned())
    }
}

impl From<String> for Part {
    fn from(text: String) -> Part {
        Part {
            range: 0..text.len(),
            whole: Utf8Bytes::from(text),
        }
    }
}

impl Serialize for Part {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Part::from)
    }
}

/// Something that happened to a room, in the order of its log. `at` is the publishing node's
/// clock, in ms since the Unix epoch; `conn` is the connection that caused it, and an event
/// from a connection that no longer holds its session is ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A connection with a verified token joins as a new session.
    Join {
        /// The new session's id and the token's subject, name and role.
        who: Entrant,
        inv: Option<String>,
        conn: ConnRef,
        at: u64,
        /// A resident's rules as the store has them.
        rules: Option<Rules>,
    },
    /// A connection takes up session `peer` again.
    Resume {
        peer: PeerId,
        sub: String,
        conn: ConnRef,
        last_seq: u64,
        at: u64,
    },
    /// The connection ended without `leave`: the session is held for the grace period.
    Gone { conn: ConnRef, at: u64 },
    /// The session ends on purpose.
    Leave {
        conn: ConnRef,
        at: u64,
        cseq: Option<u64>,
    },
    /// A `signal` from `conn`'s session to `to`, with its `data` as JSON text.
    Signal {
        conn: ConnRef,
        to: PeerId,
        data: Part,
        cseq: Option<u64>,
        /// When the origin node read it, for its latency histogram (not sent on).
        #[serde(skip)]
        read_at: Option<std::time::Instant>,
    },
    /// A clinician admits (`deny: None`) or turns away a waiting peer.
    Decide {
        conn: ConnRef,
        peer: PeerId,
        deny: Option<Option<String>>,
        at: u64,
        cseq: Option<u64>,
    },
    /// A pre-call check the session reported.
    Check {
        conn: ConnRef,
        report: CheckReport,
        request: Option<String>,
        cseq: Option<u64>,
    },
    /// A message for `conn`'s session from its node (an error about what it sent, a notice).
    Tell { conn: ConnRef, msg: ServerMessage },
    /// `conn`'s client has read its session's messages up to `seq` (its WebSocket answered a
    /// ping sent after them): they are no longer kept for replay.
    Ack { conn: ConnRef, seq: u64 },
    /// Time passed: held sessions and places older than their grace end.
    Tick { at: u64 },
    /// A node stopped: its sessions are held as if their connections had dropped.
    NodeLost { node: NodeId, at: u64 },
    /// A resident's rules changed.
    Rules { sub: String, rules: Rules, at: u64 },
    /// An invitation was withdrawn.
    Revoke { inv: String, at: u64 },
    /// Staff ask a resident's tablets for a check.
    RunCheck { sub: String, request: String },
    /// The only server holding the room stops: every session ends (and is recorded so).
    End { at: u64 },
}

/// What a node must do after an event: deliver, close, record.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// A message in a session's stream, for its connection.
    Msg {
        to: ConnRef,
        seq: u64,
        text: Utf8Bytes,
        read_at: Option<std::time::Instant>,
    },
    /// Send an error and close the connection; the message is outside any session's stream.
    Close {
        to: ConnRef,
        code: ErrorCode,
        message: String,
    },
    /// The session moved to another connection: close this one quietly.
    Detach { to: ConnRef },
    /// The connection now holds session `peer` (new or resumed).
    Bound {
        to: ConnRef,
        peer: PeerId,
        waiting: bool,
    },
    /// A resumed session: `resumed`, then these missed messages (none when `snapshot`: the
    /// state follows as new messages).
    Resumed {
        to: ConnRef,
        peer: PeerId,
        acked: u64,
        replay: Vec<(u64, Utf8Bytes)>,
        snapshot: bool,
    },
    /// The session to resume is gone: the connection joins afresh.
    NotResumed { to: ConnRef },
    /// An audit record to save.
    Audit(AuditRecord),
    /// A tablet's record to update.
    Tablet(TabletChange),
    /// A tablet answered staff's check request.
    CheckAnswer {
        request: String,
        sub: String,
        report: CheckReport,
    },
}

/// One session: a person's place in the room across connections.
///
/// In this order, the fields a relayed `signal` reads or writes first (its sender's connection
/// and client `seq`, its receiver's `seq`, connection and replay buffer, both roles): they
/// then share two cache lines of the session's box instead of spreading over its four.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[repr(C)]
struct Session {
    /// Its connection; `None` while held.
    conn: Option<ConnRef>,
    /// The last `seq` it was sent.
    seq: u64,
    /// The highest client `seq` applied.
    acked: u64,
    /// The last messages it was sent, for replay.
    ring: VecDeque<(u64, Text)>,
    role: Role,
    sub: String,
    name: String,
    inv: Option<String>,
    /// When its connection dropped, while held.
    dropped_at: Option<u64>,
    /// When it joined.
    since: u64,
    check: Option<CheckReport>,
}

impl Session {
    /// Its client has read everything up to `seq`: what it kept for replay up to there goes,
    /// and so does the buffer's spare room (a buffer that once held the whole replay allowance
    /// would otherwise stay that size for as long as the session lasts).
    fn delivered(&mut self, seq: u64) {
        while self.ring.front().is_some_and(|(n, _)| *n <= seq) {
            self.ring.pop_front();
        }
        if self.ring.is_empty() {
            self.ring = VecDeque::new();
        } else {
            self.ring.shrink_to(2 * self.ring.len());
        }
    }
}

/// What every copy of a room must agree on, besides the events: the same on every node.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    /// How long a dropped member's session is held for resuming, ms.
    pub resume_grace_ms: u64,
    /// How long a dropped waiter's place (and session) is held, ms.
    pub waiting_grace_ms: u64,
    /// Messages kept per session for replay.
    pub replay: usize,
    pub ice: &'a IceOptions,
    pub resume: &'a ResumeKeys,
}

/// Requests to run a check that were already passed on, so a request published by several
/// nodes reaches the tablet once.
const RECENT_REQUESTS: usize = 64;

/// One room's state as its log made it.
///
/// In this order, what a relayed `signal` reads first: the sessions, then the room's members.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[repr(C)]
pub(crate) struct Replica {
    /// A sorted vector (a room has a handful of sessions, where a `BTreeMap`'s first node has
    /// room for eleven), of boxes (which keep the vector's spare room small).
    sessions: LiteMap<PeerId, Box<Session>>,
    room: Room,
    /// Residents' rules, by subject, for the residents who joined this room.
    rules: BTreeMap<String, Rules>,
    requests: VecDeque<String>,
}

/// Staff, clinicians and other residents are never kept from a resident by their rules.
fn exempt_from_rules(role: Role) -> bool {
    matches!(role, Role::Staff | Role::Clinician | Role::Resident)
}

/// Whether people with these roles and subjects may see and signal each other: between a
/// resident and someone else who is not staff or a clinician, the resident's rules must list
/// the other.
fn rules_allow(rules: &BTreeMap<String, Rules>, a: (Role, &str), b: (Role, &str)) -> bool {
    let check = |resident: (Role, &str), other: (Role, &str)| {
        resident.0 != Role::Resident
            || exempt_from_rules(other.0)
            || rules.get(resident.1).is_none_or(|r| r.allows(other.1))
    };
    check(a, b) && check(b, a)
}

/// Serialises a server message; these types always serialise, so a failure is logged.
pub(crate) fn encode(msg: &ServerMessage) -> Option<Utf8Bytes> {
    match serde_json::to_string(msg) {
        Ok(s) => Some(Utf8Bytes::from(s)),
        Err(e) => {
            warn!(error = %e, "could not serialise a server message");
            None
        }
    }
}

/// `{"type":"signal","from":…,"data":…}` around `data`, which is JSON already: written by hand
/// so the data is not parsed and written again for every message relayed.
fn signal_text(from: &PeerId, data: &str) -> Utf8Bytes {
    Utf8Bytes::from(signal_json(from, data))
}

/// The text of [`signal_text`], allocated at exactly its length: shared bytes made of it then
/// need no second allocation.
fn signal_json(from: &PeerId, data: &str) -> String {
    const HEAD: &str = "{\"type\":\"signal\",\"from\":";
    const DATA: &str = ",\"data\":";
    // The server's ids need no escaping: the length is exact unless one ever does.
    let quoted = from.as_str().len() + 2;
    let mut text = Vec::with_capacity(HEAD.len() + quoted + DATA.len() + data.len() + 1);
    text.extend_from_slice(HEAD.as_bytes());
    if serde_json::to_writer(&mut text, from.as_str()).is_err() {
        text.extend_from_slice(b"\"\"");
    }
    text.extend_from_slice(DATA.as_bytes());
    text.extend_from_slice(data.as_bytes());
    text.push(b'}');
    // An id that needed escaping made it longer: exact again (a no-op otherwise).
    text.shrink_to_fit();
    // Only strings and JSON text went in.
    String::from_utf8(text).unwrap_or_default()
}

impl Replica {
    /// An empty room.
    pub(crate) fn new(name: &str, capacity: Capacity) -> Replica {
        Replica {
            room: Room::new(name, capacity),
            sessions: LiteMap::new(),
            rules: BTreeMap::new(),
            requests: VecDeque::new(),
        }
    }

    /// Holds the room to these limits from now on.
    pub(crate) fn set_capacity(&mut self, capacity: Capacity) {
        self.room.set_capacity(capacity);
    }

    /// Nobody in the call, nobody waiting, no session held.
    pub(crate) fn is_empty(&self) -> bool {
        self.room.is_empty() && self.sessions.is_empty()
    }

    /// The index of the session that `conn` holds.
    fn held_by(&self, conn: &ConnRef) -> Option<usize> {
        self.sessions
            .iter()
            .position(|(_, s)| s.conn.as_ref() == Some(conn))
    }

    /// The session that `conn` holds.
    fn owner(&self, conn: &ConnRef) -> Option<PeerId> {
        let (peer, _) = self.sessions.get_indexed(self.held_by(conn)?)?;
        Some(peer.clone())
    }

    /// The session at index `at`, to change.
    fn session_at(&mut self, at: usize) -> Option<&mut Session> {
        self.sessions.iter_mut().nth(at).map(|(_, s)| &mut **s)
    }

    /// The last `seq` sent to session `peer` and how many messages are kept for its replay,
    /// while `conn` holds it and some are: the number for a ping that asks the client to
    /// confirm them.
    pub(crate) fn unacked(&self, peer: &PeerId, conn: &ConnRef) -> Option<(u64, usize)> {
        let s = self.sessions.get(peer)?;
        (s.conn.as_ref() == Some(conn) && !s.ring.is_empty()).then_some((s.seq, s.ring.len()))
    }

    /// Whether the session holds `conn` and this client message is new (not sent again after a
    /// resume); records it as applied.
    fn accept(&mut self, conn: &ConnRef, cseq: Option<u64>) -> Option<PeerId> {
        let i = self.accept_at(conn, cseq)?;
        self.sessions.get_indexed(i).map(|(p, _)| p.clone())
    }

    /// [`Replica::accept`], giving the session's index: one pass over the sessions, and
    /// nothing copied.
    fn accept_at(&mut self, conn: &ConnRef, cseq: Option<u64>) -> Option<usize> {
        let i = self.held_by(conn)?;
        let s = self.session_at(i)?;
        if let Some(c) = cseq {
            if c <= s.acked {
                return None;
            }
            s.acked = c;
        }
        Some(i)
    }

    /// Sessions connected through `node`.
    pub(crate) fn conns_on<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a PeerId, &'a ConnRef)> + 'a {
        self.sessions
            .iter()
            .filter_map(move |(p, s)| s.conn.as_ref().filter(|c| &*c.node == node).map(|c| (p, c)))
    }

    /// Nodes that hold a connection of this room.
    pub(crate) fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .sessions
            .values()
            .filter_map(|s| s.conn.as_ref().map(|c| c.node.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The earliest time at which a held session or place ends, if any is held.
    pub(crate) fn next_deadline(&self, ctx: &Ctx<'_>) -> Option<u64> {
        self.sessions
            .iter()
            .filter_map(|(p, s)| {
                let dropped = s.dropped_at?;
                let grace = if self.room.is_waiting(p) {
                    ctx.waiting_grace_ms
                } else {
                    ctx.resume_grace_ms
                };
                Some(dropped.saturating_add(grace))
            })
            .min()
    }

    /// Residents' tablets connected now: subject, name, since when, last check.
    pub(crate) fn tablets(&self) -> impl Iterator<Item = (&str, &str, u64, Option<CheckReport>)> {
        self.sessions
            .values()
            .filter(|s| s.role == Role::Resident && s.conn.is_some())
            .map(|s| (s.sub.as_str(), s.name.as_str(), s.since, s.check))
    }

    /// Sessions holding invitation `inv`, or subject `sub` as a resident.
    pub(crate) fn concerns(&self, inv: Option<&str>, resident: Option<&str>) -> bool {
        self.sessions.values().any(|s| {
            inv.is_some_and(|i| s.inv.as_deref() == Some(i))
                || resident.is_some_and(|r| s.role == Role::Resident && s.sub == r)
        }) || inv.is_some_and(|i| {
            // A held waiting place of an invitation's guest has the invitation's subject.
            let sub = format!("inv-{i}");
            self.sessions.values().any(|s| s.sub == sub)
        })
    }

    /// Applies one event.
    pub(crate) fn apply(&mut self, event: Event, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        match event {
            Event::Join {
                who,
                inv,
                conn,
                at,
                rules,
            } => self.join(who, inv, conn, at, rules, ctx, out),
            Event::Resume {
                peer,
                sub,
                conn,
                last_seq,
                at,
            } => self.resume(&peer, &sub, conn, last_seq, at, ctx, out),
            Event::Gone { conn, at } => {
                if let Some(peer) = self.owner(&conn) {
                    self.dropped(&peer, at, ctx, out);
                }
            }
            Event::Leave { conn, at, cseq } => {
                if let Some(peer) = self.accept(&conn, cseq) {
                    let mut fx = Vec::new();
                    self.room.leave(&peer, &mut fx);
                    if let Some(s) = self.sessions.remove(&peer) {
                        self.seen(&s, at, out);
                    }
                    self.effects(fx, at, ctx, out);
                }
            }
            Event::Signal {
                conn,
                to,
                data,
                cseq,
                read_at,
            } => {
                // The relay's hot path: each session is found once, by its index, and the
                // sender's id is copied only for a refusal.
                let Some(i) = self.accept_at(&conn, cseq) else {
                    return;
                };
                let Some((from, _)) = self.sessions.get_indexed(i) else {
                    return;
                };
                match self.may_signal(from, &to) {
                    Ok(at) => {
                        let text = signal_text(from, data.as_str());
                        self.send_text_at(at, Text(text), read_at, true, ctx, out);
                    }
                    Err(code) => {
                        let from = from.clone();
                        let message = match code {
                            ErrorCode::Forbidden if self.room.is_waiting(&from) => {
                                "You are in the waiting room; the clinician will let you in."
                            }
                            other => other.default_message(),
                        };
                        self.refuse(&from, code, message, Some(to), ctx, out);
                    }
                }
            }
            Event::Decide {
                conn,
                peer,
                deny,
                at,
                cseq,
            } => {
                let Some(by) = self.accept(&conn, cseq) else {
                    return;
                };
                let mut fx = Vec::new();
                let admitting = deny.is_none();
                let result = match deny {
                    None => self.room.admit(&by, &peer, &mut fx),
                    Some(reason) => self.room.deny(&by, &peer, reason, &mut fx),
                };
                match result {
                    Ok(()) => self.effects(fx, at, ctx, out),
                    Err(code) => {
                        let message = match (code, admitting) {
                            (ErrorCode::Forbidden, true) => {
                                "Only a clinician in the call can let people in."
                            }
                            (ErrorCode::Forbidden, false) => {
                                "Only a clinician in the call can turn people away."
                            }
                            (other, _) => other.default_message(),
                        };
                        self.refuse(&by, code, message, Some(peer), ctx, out);
                    }
                }
            }
            Event::Check {
                conn,
                report,
                request,
                cseq,
            } => self.check(&conn, report, request, cseq, ctx, out),
            Event::Tell { conn, msg } => {
                if let Some(peer) = self.owner(&conn) {
                    self.send(&peer, &msg, ctx, out);
                }
            }
            Event::Ack { conn, seq } => {
                if let Some(peer) = self.owner(&conn)
                    && let Some(s) = self.sessions.get_mut(&peer)
                {
                    s.delivered(seq);
                }
            }
            Event::Tick { at } => self.expire(at, ctx, out),
            Event::NodeLost { node, at } => {
                let lost: Vec<PeerId> = self
                    .conns_on(&node)
                    .map(|(p, _)| p.clone())
                    .collect::<Vec<_>>();
                for peer in lost {
                    self.dropped(&peer, at, ctx, out);
                }
            }
            Event::Rules { sub, rules, at } => self.set_rules(&sub, rules, at, ctx, out),
            Event::Revoke { inv, at } => self.revoke(&inv, at, ctx, out),
            Event::End { at } => {
                let mut fx = Vec::new();
                let everyone: Vec<PeerId> = self.sessions.keys().cloned().collect();
                for peer in everyone {
                    if let Some(s) = self.sessions.remove(&peer) {
                        self.seen(&s, at, out);
                    }
                    self.room.leave(&peer, &mut fx);
                }
                // Only the records: the connections are closing.
                fx.retain(|e| matches!(e, Effect::Audit { .. }));
                self.effects(fx, at, ctx, out);
            }
            Event::RunCheck { sub, request } => {
                if self.requests.contains(&request) {
                    return;
                }
                self.requests.push_back(request.clone());
                while self.requests.len() > RECENT_REQUESTS {
                    self.requests.pop_front();
                }
                let tablets: Vec<PeerId> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.role == Role::Resident && s.sub == sub && s.conn.is_some())
                    .map(|(p, _)| p.clone())
                    .collect();
                let msg = ServerMessage::RunCheck { request };
                for peer in tablets {
                    self.send(&peer, &msg, ctx, out);
                }
            }
        }
        // Every session has a place in the room; one that lost it (denied, replaced) is gone.
        let room = &self.room;
        self.sessions
            .retain(|p, _| room.member(p).is_some() || room.is_waiting(p));
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        who: Entrant,
        inv: Option<String>,
        conn: ConnRef,
        at: u64,
        rules: Option<Rules>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        if who.role == Role::Resident
            && let Some(r) = rules
        {
            self.rules.insert(who.sub.clone(), r);
        }
        let fresh = Session {
            sub: who.sub.clone(),
            name: who.name.clone(),
            role: who.role,
            inv,
            conn: Some(conn.clone()),
            dropped_at: None,
            since: at,
            check: None,
            seq: 0,
            ring: VecDeque::new(),
            acked: 0,
        };
        let (role, sub) = (who.role, who.sub.clone());
        let mut fx = Vec::new();
        let placed = match self.room.join(who.clone(), at, &mut fx) {
            Ok(p) => p,
            Err(code) => {
                out.push(Out::Close {
                    to: conn,
                    code,
                    message: code.default_message().to_owned(),
                });
                return;
            }
        };
        let (peer, waiting) = match placed {
            Placement::Call => (who.peer.clone(), false),
            Placement::Waiting(id) => (id, true),
        };
        // A waiting patient who joined again takes over their place: the older connection, if
        // the server still had it, is closed, and the session's stream starts again.
        if let Some(old) = self.sessions.insert(peer.clone(), Box::new(fresh))
            && let Some(old_conn) = old.conn
        {
            out.push(Out::Close {
                to: old_conn,
                code: ErrorCode::Replaced,
                message: ErrorCode::Replaced.default_message().to_owned(),
            });
        }
        out.push(Out::Bound {
            to: conn,
            peer: peer.clone(),
            waiting,
        });
        if waiting && fx.is_empty() {
            // Same place, same position: the new connection still needs to hear it.
            if let Some(msg) = self.room.position_of(&peer) {
                fx.push(Effect::Send(peer.clone(), msg));
            }
        }
        self.effects(fx, at, ctx, out);
        if role == Role::Resident {
            let rules = self.rules.get(&sub).cloned().unwrap_or_default();
            self.send(&peer, &ServerMessage::Rules { rules }, ctx, out);
            if let Some(s) = self.sessions.get(&peer) {
                self.seen(s, at, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn resume(
        &mut self,
        peer: &PeerId,
        sub: &str,
        conn: ConnRef,
        last_seq: u64,
        at: u64,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        let Some(s) = self.sessions.get_mut(peer).filter(|s| s.sub == sub) else {
            out.push(Out::NotResumed { to: conn });
            return;
        };
        if let Some(old) = s.conn.replace(conn.clone())
            && old != conn
        {
            out.push(Out::Detach { to: old });
        }
        let was_dropped = s.dropped_at.take().is_some();
        // Everything after `last_seq` is in the buffer when the oldest kept message is at most
        // the next one (or nothing was sent since).
        let oldest = s.ring.front().map_or(s.seq + 1, |(seq, _)| *seq);
        let whole = last_seq <= s.seq && oldest <= last_seq + 1;
        let replay: Vec<(u64, Utf8Bytes)> = if whole {
            s.ring
                .iter()
                .filter(|(seq, _)| *seq > last_seq)
                .map(|(seq, t)| (*seq, t.0.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let (acked, role) = (s.acked, s.role);
        out.push(Out::Bound {
            to: conn.clone(),
            peer: peer.clone(),
            waiting: self.room.is_waiting(peer),
        });
        out.push(Out::Resumed {
            to: conn,
            peer: peer.clone(),
            acked,
            replay,
            snapshot: !whole,
        });
        let mut fx = Vec::new();
        if self.room.is_waiting(peer) {
            self.room.reconnect(peer, &mut fx);
        }
        if !whole {
            // Too much was missed: the client is told the whole state again.
            if let Some(msg) = self.room.position_of(peer) {
                fx.push(Effect::Send(peer.clone(), msg));
            } else if self.room.member(peer).is_some() {
                let peers = self
                    .room
                    .members()
                    .iter()
                    .filter(|m| &m.peer != peer)
                    .map(|m| hearth_proto::PeerInfo {
                        peer: m.peer.clone(),
                        name: m.name.clone(),
                        role: m.role,
                        sub: m.sub.clone(),
                    })
                    .collect();
                fx.push(Effect::Welcome {
                    peer: peer.clone(),
                    peers,
                });
                if let Some(lobby) = self.room.lobby_for(peer) {
                    fx.push(Effect::Send(peer.clone(), lobby));
                }
            }
        }
        self.effects(fx, at, ctx, out);
        if !whole && role == Role::Resident {
            let rules = self.rules.get(sub).cloned().unwrap_or_default();
            self.send(peer, &ServerMessage::Rules { rules }, ctx, out);
        }
        if was_dropped && let Some(s) = self.sessions.get(peer) {
            self.seen(s, at, out);
        }
    }

    /// A session's connection is gone: held, and a waiter's clinicians see it.
    fn dropped(&mut self, peer: &PeerId, at: u64, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let Some(s) = self.sessions.get_mut(peer) else {
            return;
        };
        s.conn = None;
        s.dropped_at = Some(at);
        let mut fx = Vec::new();
        self.room.disconnect(peer, at, &mut fx);
        if let Some(s) = self.sessions.get(peer) {
            self.seen(s, at, out);
        }
        self.effects(fx, at, ctx, out);
    }

    /// Ends held sessions and places whose grace is over.
    fn expire(&mut self, at: u64, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let mut fx = Vec::new();
        let over: Vec<PeerId> = self
            .sessions
            .iter()
            .filter(|(p, s)| {
                self.room.member(p).is_some()
                    && s.dropped_at
                        .is_some_and(|t| at.saturating_sub(t) >= ctx.resume_grace_ms)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for peer in over {
            self.sessions.remove(&peer);
            self.room.leave(&peer, &mut fx);
        }
        self.room.expire(at, ctx.waiting_grace_ms, &mut fx);
        self.effects(fx, at, ctx, out);
    }

    fn check(
        &mut self,
        conn: &ConnRef,
        report: CheckReport,
        request: Option<String>,
        cseq: Option<u64>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        let Some(peer) = self.accept(conn, cseq) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        s.check = Some(report);
        let (role, sub, name) = (s.role, s.sub.clone(), s.name.clone());
        let mut fx = Vec::new();
        self.room.set_check(&peer, report, &mut fx);
        self.effects(fx, report.at, ctx, out);
        if role == Role::Resident {
            out.push(Out::Tablet(TabletChange::Checked {
                sub: sub.clone(),
                name,
                room: self.room.name().to_owned(),
                report,
            }));
        }
        if let Some(request) = request {
            out.push(Out::CheckAnswer {
                request,
                sub,
                report,
            });
        }
    }

    /// Whether `from` may signal `to`: the index of `to`'s session when it may.
    fn may_signal(&self, from: &PeerId, to: &PeerId) -> Result<usize, ErrorCode> {
        self.room.check_signal(from, to)?;
        let at = self
            .sessions
            .find_index(to)
            .map_err(|_| ErrorCode::UnknownPeer)?;
        let (Some(a), Some((_, b))) = (self.sessions.get(from), self.sessions.get_indexed(at))
        else {
            return Err(ErrorCode::UnknownPeer);
        };
        if rules_allow(&self.rules, (a.role, &a.sub), (b.role, &b.sub)) {
            Ok(at)
        } else {
            Err(ErrorCode::Forbidden)
        }
    }

    /// New rules for resident `sub`: its tablets get them, then whoever they now separate from
    /// the resident sees the other leave, whoever they now allow sees the other arrive.
    fn set_rules(&mut self, sub: &str, rules: Rules, at: u64, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let before = self.rules.insert(sub.to_owned(), rules.clone());
        if before.as_ref() == Some(&rules) {
            return;
        }
        let tablets: Vec<PeerId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.role == Role::Resident && s.sub == sub)
            .map(|(p, _)| p.clone())
            .collect();
        let msg = ServerMessage::Rules {
            rules: rules.clone(),
        };
        for peer in &tablets {
            self.send(peer, &msg, ctx, out);
        }
        let members = self.room.members().to_vec();
        let mut fx = Vec::new();
        for resident in members
            .iter()
            .filter(|m| m.role == Role::Resident && m.sub == sub)
        {
            for other in members
                .iter()
                .filter(|m| m.peer != resident.peer && !exempt_from_rules(m.role))
            {
                let was = before.as_ref().is_none_or(|r| r.allows(&other.sub));
                let is = rules.allows(&other.sub);
                if was == is {
                    continue;
                }
                for (to, about) in [(resident, other), (other, resident)] {
                    let msg = if is {
                        ServerMessage::PeerJoined {
                            peer: about.peer.clone(),
                            name: about.name.clone(),
                            role: about.role,
                            sub: about.sub.clone(),
                        }
                    } else {
                        ServerMessage::PeerLeft {
                            peer: about.peer.clone(),
                        }
                    };
                    fx.push(Effect::Send(to.peer.clone(), msg));
                }
            }
        }
        self.effects(fx, at, ctx, out);
    }

    /// Withdraws an invitation: its sessions end with `revoked` (a waiting patient loses their
    /// place, held or not).
    fn revoke(&mut self, inv: &str, at: u64, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let guest = format!("inv-{inv}");
        let holders: Vec<PeerId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.inv.as_deref() == Some(inv) || s.sub == guest)
            .map(|(p, _)| p.clone())
            .collect();
        let mut fx = Vec::new();
        for peer in holders {
            if let Some(s) = self.sessions.remove(&peer) {
                if let Some(conn) = &s.conn {
                    out.push(Out::Close {
                        to: conn.clone(),
                        code: ErrorCode::Revoked,
                        message: ErrorCode::Revoked.default_message().to_owned(),
                    });
                }
                self.seen(&s, at, out);
            }
            self.room.leave(&peer, &mut fx);
        }
        self.room.forget_waiting(&guest, &mut fx);
        self.effects(fx, at, ctx, out);
    }

    /// A resident's tablet connected or disconnected.
    fn seen(&self, s: &Session, at: u64, out: &mut Vec<Out>) {
        if s.role == Role::Resident {
            out.push(Out::Tablet(TabletChange::Seen {
                sub: s.sub.clone(),
                name: s.name.clone(),
                room: self.room.name().to_owned(),
                at,
            }));
        }
    }

    /// Turns the room's effects into messages, closes and records.
    fn effects(&mut self, fx: Vec<Effect>, at: u64, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        for effect in fx {
            match effect {
                Effect::Send(peer, msg) => {
                    // Residents' rules shape what each side sees: someone a resident's rules do
                    // not list does not see the resident (and the other way round).
                    if let ServerMessage::PeerJoined { role, sub, .. } = &msg {
                        let visible = self.sessions.get(&peer).is_some_and(|s| {
                            rules_allow(&self.rules, (s.role, &s.sub), (*role, sub))
                        });
                        if !visible {
                            continue;
                        }
                    }
                    self.send(&peer, &msg, ctx, out);
                }
                Effect::Welcome { peer, peers } => {
                    let Some(s) = self.sessions.get(&peer) else {
                        continue;
                    };
                    let peers = peers
                        .into_iter()
                        .filter(|p| rules_allow(&self.rules, (s.role, &s.sub), (p.role, &p.sub)))
                        .collect();
                    let welcome = ServerMessage::Welcome {
                        peer: peer.clone(),
                        room: self.room.name().to_owned(),
                        role: s.role,
                        peers,
                        ice_servers: ctx.ice.servers_for(&s.sub, at / 1000),
                        resume_secret: None,
                    };
                    self.send(&peer, &welcome, ctx, out);
                }
                Effect::Close {
                    peer,
                    code,
                    message,
                } => {
                    if let Some(s) = self.sessions.remove(&peer) {
                        if let Some(conn) = &s.conn {
                            out.push(Out::Close {
                                to: conn.clone(),
                                code,
                                message,
                            });
                        }
                        self.seen(&s, at, out);
                    }
                }
                Effect::Audit {
                    event,
                    room,
                    who,
                    by,
                } => {
                    let (sub, name, role) = who.map_or((String::new(), String::new(), None), |w| {
                        (w.sub, w.name, Some(w.role))
                    });
                    out.push(Out::Audit(AuditRecord {
                        seq: 0,
                        at,
                        event,
                        room,
                        sub,
                        name,
                        role,
                        by_sub: by.as_ref().map(|b| b.sub.clone()),
                        by_name: by.map(|b| b.name),
                    }));
                }
            }
        }
    }

    /// An error in `peer`'s stream about something it sent, naming the peer that request
    /// named (`about`).
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        peer: &PeerId,
        code: ErrorCode,
        message: &str,
        about: Option<PeerId>,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        let msg = ServerMessage::Error {
            code,
            message: message.to_owned(),
            peer: about,
        };
        self.send(peer, &msg, ctx, out);
    }

    /// Numbers a message in `peer`'s stream, keeps it for replay and hands it to its
    /// connection. `welcome` and `waiting` carry the session's resume secret.
    fn send(&mut self, peer: &PeerId, msg: &ServerMessage, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        // A session's first message, its `welcome` or `waiting`, is never replayed: it carries
        // the secret a client resumes with, so a client that resumes has had it. (Kept, it
        // would be the largest thing an idle session holds.)
        let (text, keep) = match msg {
            ServerMessage::Welcome { .. } | ServerMessage::Waiting { .. } => {
                let mut msg = msg.clone();
                if let ServerMessage::Welcome { resume_secret, .. }
                | ServerMessage::Waiting { resume_secret, .. } = &mut msg
                {
                    *resume_secret = Some(ctx.resume.secret_for(peer));
                }
                let first = self.sessions.get(peer).is_some_and(|s| s.seq == 0);
                (encode(&msg), !first)
            }
            _ => (encode(msg), true),
        };
        if let Some(text) = text {
            self.send_text(peer, Text(text), None, keep, ctx, out);
        }
    }

    /// `keep`: kept for replay (see [`Replica::send`]).
    fn send_text(
        &mut self,
        peer: &PeerId,
        text: Text,
        read_at: Option<std::time::Instant>,
        keep: bool,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        if let Ok(at) = self.sessions.find_index(peer) {
            self.send_text_at(at, text, read_at, keep, ctx, out);
        }
    }

    /// [`Replica::send_text`] to the session at index `at`.
    fn send_text_at(
        &mut self,
        at: usize,
        text: Text,
        read_at: Option<std::time::Instant>,
        keep: bool,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        let Some(s) = self.session_at(at) else {
            return;
        };
        s.seq += 1;
        let seq = s.seq;
        if let Some(conn) = &s.conn {
            out.push(Out::Msg {
                to: conn.clone(),
                seq,
                text: text.0.clone(),
                read_at,
            });
        }
        if !keep {
            return;
        }
        s.ring.push_back((seq, text));
        while s.ring.len() > ctx.replay {
            s.ring.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(n: u64) -> ConnRef {
        ConnRef {
            node: "n1".into(),
            conn: n,
        }
    }

    fn join(r: &mut Replica, peer: &str, c: u64, ctx: &Ctx<'_>) {
        let who = Entrant {
            peer: PeerId::from(peer),
            sub: format!("sub-{peer}"),
            name: peer.into(),
            role: Role::Family,
        };
        let event = Event::Join {
            who,
            inv: None,
            conn: conn(c),
            at: 1,
            rules: None,
        };
        r.apply(event, ctx, &mut Vec::new());
    }

    fn signal(r: &mut Replica, from: u64, to: &str, n: u64, ctx: &Ctx<'_>) {
        let event = Event::Signal {
            conn: conn(from),
            to: PeerId::from(to),
            data: Part::from(n.to_string()),
            cseq: None,
            read_at: None,
        };
        r.apply(event, ctx, &mut Vec::new());
    }

    /// What a resume of `peer` on connection `c` from `last_seq` gets: how many messages are
    /// replayed, and whether it is the state again instead.
    fn resume(r: &mut Replica, peer: &str, c: u64, last_seq: u64, ctx: &Ctx<'_>) -> (usize, bool) {
        let event = Event::Resume {
            peer: PeerId::from(peer),
            sub: format!("sub-{peer}"),
            conn: conn(c),
            last_seq,
            at: 2,
        };
        let mut out = Vec::new();
        r.apply(event, ctx, &mut out);
        out.into_iter()
            .find_map(|o| match o {
                Out::Resumed {
                    replay, snapshot, ..
                } => Some((replay.len(), snapshot)),
                _ => None,
            })
            .expect("resumed")
    }

    fn ack(r: &mut Replica, c: u64, seq: u64, ctx: &Ctx<'_>) {
        r.apply(Event::Ack { conn: conn(c), seq }, ctx, &mut Vec::new());
    }

    #[test]
    fn a_relayed_signal_reads_as_json_and_is_allocated_at_its_length() {
        for (from, data) in [
            ("p-1a2b", r#"{"sdp":"v=0\r\n"}"#),
            // An id that needs escaping is escaped.
            ("odd\"id\\\n", "[1,2]"),
        ] {
            let text = signal_text(&PeerId::from(from), data);
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(
                value,
                serde_json::json!({
                    "type": "signal",
                    "from": from,
                    "data": serde_json::from_str::<serde_json::Value>(data).unwrap(),
                })
            );
        }
        // Allocated at exactly its length, so sharing its bytes needs no second allocation.
        for from in ["p", "odd\"id"] {
            let text = signal_json(&PeerId::from(from), "1");
            assert_eq!(text.capacity(), text.len(), "{text}");
        }
    }

    #[test]
    fn a_part_is_the_slice_of_the_message_it_came_from_and_reads_and_writes_as_its_text() {
        let whole = Utf8Bytes::from(r#"{"type":"signal","to":"p1","data":{"é":"v=0"}}"#);
        let start = whole.find(r#"{"é""#).unwrap();
        let data = &whole[start..whole.len() - 1];
        assert_eq!(span(&whole, data), Some(start..whole.len() - 1));
        // Not a slice of it: equal text elsewhere, or text around it.
        let copy = String::from(data);
        assert_eq!(span(&whole, &copy), None);
        assert_eq!(span(data, &whole), None);

        let at = whole.as_ptr();
        let (part, n) = Part::find(whole.clone(), |t| Some((&t[start..t.len() - 1], 7))).unwrap();
        assert_eq!((part.as_str(), n), (r#"{"é":"v=0"}"#, 7));
        assert_eq!(part.whole.as_ptr(), at, "the message's own bytes");
        assert_eq!(format!("{part:?}"), r#"Part("{\"é\":\"v=0\"}")"#);
        let json = serde_json::to_string(&part).unwrap();
        assert_eq!(json, r#""{\"é\":\"v=0\"}""#);
        let back: Part = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), part.as_str());
        // Found nowhere: the message comes back; found elsewhere: a copy.
        let back = Part::find(whole.clone(), |_| None::<(&str, ())>).unwrap_err();
        assert_eq!(back.as_ptr(), at);
        let (part, ()) = Part::find(whole, |_| Some(("[1]", ()))).unwrap();
        assert_eq!(part.as_str(), "[1]");
    }

    #[test]
    fn connections_are_the_same_only_on_the_same_node() {
        let other = ConnRef {
            node: "n2".into(),
            conn: 1,
        };
        assert_eq!(conn(1), conn(1));
        assert_ne!(conn(1), conn(2));
        assert_ne!(conn(1), other);
    }

    #[test]
    fn what_the_client_confirmed_is_no_longer_kept_and_a_resume_from_before_it_gets_a_snapshot() {
        let secret = crate::secret::Secret::generate();
        let (ice, resume_keys) = (IceOptions::default(), ResumeKeys::new(&secret));
        let ctx = Ctx {
            resume_grace_ms: 30_000,
            waiting_grace_ms: 120_000,
            replay: 256,
            ice: &ice,
            resume: &resume_keys,
        };
        let mut r = Replica::new("r", Capacity::both(4));
        join(&mut r, "a", 1, &ctx);
        join(&mut r, "b", 2, &ctx);
        for n in 0..5 {
            signal(&mut r, 1, "b", n, &ctx);
        }
        let b = PeerId::from("b");
        let (last, kept) = r.unacked(&b, &conn(2)).expect("b has messages kept");
        assert_eq!(kept, 5, "the five signals (its `welcome` is not kept)");
        // Only the connection that holds the session is asked.
        assert_eq!(r.unacked(&b, &conn(1)), None);
        // An acknowledgement from another connection changes nothing.
        ack(&mut r, 1, last, &ctx);
        assert_eq!(r.unacked(&b, &conn(2)), Some((last, 5)));
        // Confirmed up to two before the last: two are still kept.
        ack(&mut r, 2, last - 2, &ctx);
        let kept: Vec<u64> = r.sessions[&b].ring.iter().map(|(n, _)| *n).collect();
        assert_eq!(kept, vec![last - 1, last]);
        // Confirmed to the end: nothing is kept, not even the buffer's room.
        ack(&mut r, 2, last, &ctx);
        assert_eq!(r.unacked(&b, &conn(2)), None);
        assert_eq!(r.sessions[&b].ring.capacity(), 0);

        // A resume from the last message confirmed has nothing to replay; one from before it
        // (a client that lost what its socket had read) gets the state again, never a gap.
        assert_eq!(resume(&mut r, "b", 3, last, &ctx), (0, false));
        signal(&mut r, 1, "b", 9, &ctx);
        assert_eq!(resume(&mut r, "b", 4, last, &ctx), (1, false));
        assert_eq!(resume(&mut r, "b", 5, last - 1, &ctx), (0, true));
    }
}
