//! The rooms of one server and the connections in them: routes messages, applies each room's
//! effects, and cuts off connections that cannot keep up; and what it enforces on them from the
//! store (withdrawn invitations, residents' rules, pending remote checks). One lock guards it all
//! so a change and the messages it causes are ordered the same for everyone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use hearth_proto::care::{AuditRecord, CheckReport, CheckResult, Rules};
use hearth_proto::{ErrorCode, PeerId, Role, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::options::ServerOptions;
use crate::persist::Write;
use crate::room::{Effect, Entrant, Placement, Room};
use crate::store::{Store, StoreError, TabletChange};
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
    name: String,
    /// The invitation the token came from, if it did.
    inv: Option<String>,
    /// When this connection joined, ms since the Unix epoch.
    since_ms: u64,
    /// Its latest pre-call check.
    check: Option<CheckReport>,
}

/// Staff asked a tablet to run its check; the answer goes to `reply`.
#[derive(Debug)]
struct PendingCheck {
    sub: String,
    reply: oneshot::Sender<CheckReport>,
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, Room>,
    peers: HashMap<PeerId, Link>,
    /// Withdrawn invitations: their tokens are refused.
    revoked: HashSet<String>,
    /// Residents' rules by the tablet's subject.
    rules: HashMap<String, Rules>,
    /// Checks staff asked for, by request id.
    checks: HashMap<String, PendingCheck>,
}

/// A connected resident's tablet, for the staff console.
#[derive(Debug, Clone)]
pub(crate) struct OnlineTablet {
    pub name: String,
    pub room: String,
    pub since_ms: u64,
    pub check: Option<CheckReport>,
}

/// Staff, clinicians and other residents are never kept from a resident by their rules.
fn exempt_from_rules(role: Role) -> bool {
    matches!(role, Role::Staff | Role::Clinician | Role::Resident)
}

/// Whether people with these roles and subjects may signal each other under residents' rules:
/// between a resident and someone else who is not staff or a clinician, the resident's rules
/// must list the other.
fn rules_allow(rules: &HashMap<String, Rules>, a: (Role, &str), b: (Role, &str)) -> bool {
    let check = |resident: (Role, &str), other: (Role, &str)| {
        resident.0 != Role::Resident
            || exempt_from_rules(other.0)
            || rules.get(resident.1).is_none_or(|r| r.allows(other.1))
    };
    check(a, b) && check(b, a)
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
    /// Invitations, tablets and the audit trail.
    pub(crate) store: Arc<Store>,
    /// Limits invitation codes tried, across all clients.
    pub(crate) redeem_limiter: governor::DefaultDirectRateLimiter,
    /// Limits invitation codes tried per client address.
    pub(crate) redeem_by_address: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Where the server listens, for invitation links when no public URL is set.
    pub(crate) listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// Writes for the store, saved off the lock by [`crate::persist::run`].
    writes: mpsc::UnboundedSender<Write>,
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
    /// A hub over `store`, loading the revoked invitations and residents' rules it enforces.
    /// The receiver must be handed to [`crate::persist::run`].
    pub(crate) fn new(
        options: ServerOptions,
        store: Arc<Store>,
    ) -> Result<(Hub, mpsc::UnboundedReceiver<Write>), StoreError> {
        let state = State {
            revoked: store.revoked_ids()?,
            rules: store.all_rules()?.into_iter().collect(),
            ..State::default()
        };
        let (writes, rx) = mpsc::unbounded_channel();
        let per_second = std::num::NonZeroU32::new(options.limits.redeem_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let per_address = std::num::NonZeroU32::new(options.limits.redeem_per_address)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let hub = Hub {
            redeem_limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            redeem_by_address: governor::RateLimiter::keyed(
                governor::Quota::per_second(per_address).allow_burst(per_address.saturating_mul(
                    std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN),
                )),
            ),
            listen: std::sync::OnceLock::new(),
            keys: TokenKeys::new(&options.secret),
            options,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            store,
            writes,
            state: Mutex::new(state),
            next_conn: AtomicU64::new(1),
        };
        Ok((hub, rx))
    }

    /// The base of invitation links: the public URL, or this server's own address.
    pub(crate) fn public_url(&self) -> String {
        match (&self.options.public_url, self.listen.get()) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(addr)) => format!("http://{addr}"),
            (None, None) => "http://localhost".to_owned(),
        }
    }

    /// True when `inv` names a withdrawn invitation.
    pub(crate) fn is_revoked(&self, inv: Option<&str>) -> bool {
        inv.is_some_and(|i| self.lock().revoked.contains(i))
    }

    fn write(&self, w: Write) {
        if self.writes.send(w).is_err() {
            warn!("the store writer has stopped; a record was not saved");
        }
    }

    /// Resolves once everything queued for the store so far is saved.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.write(Write::Flush(tx));
        let _ = rx.await;
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
        if claims
            .inv
            .as_ref()
            .is_some_and(|i| state.revoked.contains(i))
        {
            return Err(ErrorCode::Revoked);
        }
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
            name: claims.name.clone(),
            inv: claims.inv.clone(),
            since_ms: now,
            check: None,
        };
        if let Some(old) = state.peers.insert(peer.clone(), link) {
            // The same patient reconnected while the server still held the old socket.
            self.unlinked(&old, now);
            self.close_conn(
                &old.conn,
                ErrorCode::Replaced,
                ErrorCode::Replaced.default_message(),
            );
        }
        self.apply(&mut state, out, now);
        if claims.role == Role::Resident {
            let rules = state.rules.get(&claims.sub).cloned().unwrap_or_default();
            let msg = ServerMessage::Rules { rules };
            if let (Some(link), Some(text)) = (state.peers.get(&peer), encode(&msg)) {
                self.deliver(&link.conn, Outbound::message(text));
            }
            self.tablet_seen(&claims.sub, &claims.name, &claims.room, now);
        }
        self.metrics.rooms.set(state.rooms.len() as f64);
        Ok((peer, waiting))
    }

    /// A connection left the hub's maps: a tablet's last-seen time is saved.
    fn unlinked(&self, link: &Link, now: u64) {
        if link.role == Role::Resident {
            self.tablet_seen(&link.sub, &link.name, &link.room, now);
        }
    }

    fn tablet_seen(&self, sub: &str, name: &str, room: &str, at: u64) {
        self.write(Write::Tablet(TabletChange::Seen {
            sub: sub.to_owned(),
            name: name.to_owned(),
            room: room.to_owned(),
            at,
        }));
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
        if !rules_allow(
            &state.rules,
            (link.role, &link.sub),
            (target.role, &target.sub),
        ) {
            return Err(ErrorCode::Forbidden);
        }
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
        self.unlinked(&link, now);
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
        if self.shutdown.is_cancelled() {
            // Nobody is told of departures while the server stops, but the audit trail still
            // records them.
            out.retain(|e| matches!(e, Effect::Audit { .. }));
        }
        self.apply(&mut state, out, now);
        self.metrics.rooms.set(state.rooms.len() as f64);
    }

    /// Forgets waiting-room places held longer than the grace period, and rate-limit entries
    /// of addresses that went quiet.
    pub(crate) fn sweep(&self) {
        self.redeem_by_address.retain_recent();
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
        self.unlinked(&link, now);
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
                Effect::Send(peer, msg) => {
                    // Residents' rules shape what each side sees: someone a resident's rules do
                    // not list does not see the resident (and the other way round), so neither
                    // calls nor announces presence to the other.
                    if let ServerMessage::PeerJoined { role, sub, .. } = &msg {
                        let visible = state.peers.get(&peer).is_some_and(|l| {
                            rules_allow(&state.rules, (l.role, &l.sub), (*role, sub))
                        });
                        if !visible {
                            continue;
                        }
                    }
                    (peer, msg)
                }
                Effect::Welcome { peer, peers } => {
                    let Some(link) = state.peers.get(&peer) else {
                        continue;
                    };
                    debug!(peer = %peer, "welcome");
                    let peers = peers
                        .into_iter()
                        .filter(|p| {
                            rules_allow(&state.rules, (link.role, &link.sub), (p.role, &p.sub))
                        })
                        .collect();
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
                        self.unlinked(&link, now);
                        self.close_conn(&link.conn, code, &message);
                    }
                    continue;
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
                    self.write(Write::Audit(AuditRecord {
                        seq: 0,
                        at: now,
                        event,
                        room,
                        sub,
                        name,
                        role,
                        by_sub: by.as_ref().map(|b| b.sub.clone()),
                        by_name: by.map(|b| b.name),
                    }));
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

    /// A connection reported its pre-call check: a waiting peer's clinicians see it, a resident's
    /// tablet keeps it, and staff who asked for it get it.
    pub(crate) fn check(
        &self,
        peer: &PeerId,
        conn: u64,
        result: CheckResult,
        request: Option<String>,
    ) {
        let now = unix_ms();
        let report = CheckReport { result, at: now };
        let mut state = self.lock();
        if Self::owned(&state, peer, conn).is_none() {
            return;
        }
        let Some(link) = state.peers.get_mut(peer) else {
            return;
        };
        link.check = Some(report);
        let (room, role, sub, name) = (
            link.room.clone(),
            link.role,
            link.sub.clone(),
            link.name.clone(),
        );
        let mut out = Vec::new();
        if let Some(r) = state.rooms.get_mut(&room)
            && r.set_check(peer, report, &mut out)
        {
            self.apply(&mut state, out, now);
        }
        if role == Role::Resident {
            self.write(Write::Tablet(TabletChange::Checked {
                sub: sub.clone(),
                name,
                room,
                report,
            }));
        }
        if let Some(request) = request
            && state.checks.get(&request).is_some_and(|p| p.sub == sub)
            && let Some(pending) = state.checks.remove(&request)
        {
            let _ = pending.reply.send(report);
        }
    }

    /// Asks the connected tablet(s) of resident `sub` to run their check. `Offline` when none
    /// is connected. The caller must [`Hub::forget_check`] the request when it stops waiting.
    pub(crate) fn request_check(
        &self,
        sub: &str,
    ) -> Result<(String, oneshot::Receiver<CheckReport>), ErrorCode> {
        let mut state = self.lock();
        let request = uuid::Uuid::new_v4().simple().to_string();
        let msg = ServerMessage::RunCheck {
            request: request.clone(),
        };
        let text = encode(&msg).ok_or(ErrorCode::Internal)?;
        let mut asked = 0;
        for link in state
            .peers
            .values()
            .filter(|l| l.role == Role::Resident && l.sub == sub)
        {
            if self.deliver(&link.conn, Outbound::message(text.clone())) {
                asked += 1;
            }
        }
        if asked == 0 {
            return Err(ErrorCode::Offline);
        }
        let (reply, rx) = oneshot::channel();
        state.checks.insert(
            request.clone(),
            PendingCheck {
                sub: sub.to_owned(),
                reply,
            },
        );
        Ok((request, rx))
    }

    /// Stops waiting for a check's answer.
    pub(crate) fn forget_check(&self, request: &str) {
        self.lock().checks.remove(request);
    }

    /// Withdraws an invitation: its tokens are refused from now on, and everyone connected with
    /// one is disconnected with `revoked` (a waiting patient loses their place).
    pub(crate) fn revoke(&self, inv: &str) {
        let now = unix_ms();
        let mut state = self.lock();
        state.revoked.insert(inv.to_owned());
        let holders: Vec<PeerId> = state
            .peers
            .iter()
            .filter(|(_, l)| l.inv.as_deref() == Some(inv))
            .map(|(p, _)| p.clone())
            .collect();
        let mut out = Vec::new();
        for peer in holders {
            let Some(link) = state.peers.remove(&peer) else {
                continue;
            };
            info!(peer = %peer, "invitation withdrawn; disconnecting");
            self.unlinked(&link, now);
            self.close_conn(
                &link.conn,
                ErrorCode::Revoked,
                ErrorCode::Revoked.default_message(),
            );
            if let Some(room) = state.rooms.get_mut(&link.room) {
                room.leave(&peer, &mut out);
                if room.is_empty() {
                    state.rooms.remove(&link.room);
                }
            }
        }
        // A patient whose connection had dropped holds a place with no connection: it goes too.
        let sub = format!("inv-{inv}");
        for room in state.rooms.values_mut() {
            room.forget_waiting(&sub, &mut out);
        }
        state.rooms.retain(|_, room| !room.is_empty());
        self.apply(&mut state, out, now);
        self.metrics.rooms.set(state.rooms.len() as f64);
    }

    /// New rules for resident `sub`: enforced from now on and sent to its connected tablets;
    /// whoever they now separate from the resident sees the other leave, whoever they now allow
    /// sees the other arrive.
    pub(crate) fn set_rules(&self, sub: &str, rules: Rules) {
        let now = unix_ms();
        let mut state = self.lock();
        let msg = ServerMessage::Rules {
            rules: rules.clone(),
        };
        let before = state.rules.insert(sub.to_owned(), rules.clone());
        let mut out = Vec::new();
        for room in state.rooms.values() {
            let members = room.members();
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
                        out.push(Effect::Send(to.peer.clone(), msg));
                    }
                }
            }
        }
        // The tablet learns its new rules first, then who it sees because of them.
        if let Some(text) = encode(&msg) {
            for link in state
                .peers
                .values()
                .filter(|l| l.role == Role::Resident && l.sub == sub)
            {
                self.deliver(&link.conn, Outbound::message(text.clone()));
            }
        }
        self.apply(&mut state, out, now);
    }

    /// Residents' tablets connected now, by subject (the earliest connection when several).
    pub(crate) fn online_tablets(&self) -> HashMap<String, OnlineTablet> {
        let state = self.lock();
        let mut out: HashMap<String, OnlineTablet> = HashMap::new();
        for link in state.peers.values().filter(|l| l.role == Role::Resident) {
            let entry = out.entry(link.sub.clone()).or_insert_with(|| OnlineTablet {
                name: link.name.clone(),
                room: link.room.clone(),
                since_ms: link.since_ms,
                check: link.check,
            });
            entry.since_ms = entry.since_ms.min(link.since_ms);
            if link.check.map(|c| c.at) > entry.check.map(|c| c.at) {
                entry.check = link.check;
            }
        }
        out
    }

    /// Records an audit event that no room caused (staff actions).
    pub(crate) fn audit(&self, record: AuditRecord) {
        self.write(Write::Audit(record));
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
