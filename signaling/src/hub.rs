//! One node: its connections, the rooms it follows, and what it does with their events. A
//! connection's messages become events published to its room's log through the backplane; the
//! backplane hands every event of a followed room back (here, and on every other node that
//! follows the room); the room's [`Replica`] applies it and says what to deliver, and this node
//! delivers what is for its own connections. The audit trail and tablets' records are written by
//! the node that published the event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryFutureExt;
use futures_util::future::Either;
use hearth_proto::care::{AuditRecord, CheckReport, Rules};
use hearth_proto::{ErrorCode, PeerId, Resume, Role, ServerMessage};
use slab::Slab;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::backplane::{Backplane, Control, Sink, Snapshot};
use crate::frames::{CLOSE_GOING_AWAY, CLOSE_POLICY};
use crate::keylock::KeyLocks;
use crate::metrics::Metrics;
use crate::options::ServerOptions;
use crate::outlet::{Outbound, Outlet};
use crate::persist::Write;
use crate::replica::{ConnRef, Ctx, Event, NodeId, Out, Replica, encode};
use crate::resume::ResumeKeys;
use crate::room::Entrant;
use crate::store::{Store, StoreError};
use crate::token::{Claims, TokenKeys};

/// The hub's maps, looked up for every message relayed: foldhash, not std's SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A room's name as the hub's room map holds it, shared with the connections in the room: the
/// map's lookup for each message they send then hashes and compares the one string (already
/// read for the hash) instead of two.
pub(crate) type RoomName = Arc<str>;

/// The rooms this node follows: in a slab, and each found by its name too. A connection keeps
/// its room's place in the slab (see [`Hub::join`]), so each message it sends reaches the room
/// by index, without hashing the name or reading the map's table (two or three cache misses
/// for each message, with 10,000 rooms). It keeps the rooms gauge ([`Metrics::rooms`]) at its
/// count as rooms come and go.
#[derive(Debug, Default)]
struct Rooms {
    slots: Slab<Followed>,
    by_name: FastMap<RoomName, usize>,
    gauge: Option<metrics::Gauge>,
}

impl Rooms {
    /// No rooms yet, counted in `gauge`.
    fn counted(gauge: metrics::Gauge) -> Rooms {
        Rooms {
            gauge: Some(gauge),
            ..Rooms::default()
        }
    }

    fn counted_now(&self) {
        if let Some(gauge) = &self.gauge {
            gauge.set(self.len() as f64);
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn contains_key(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn get(&self, name: &str) -> Option<&Followed> {
        self.slots.get(*self.by_name.get(name)?)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Followed> {
        self.slots.get_mut(*self.by_name.get(name)?)
    }

    /// The room at `slot` when it is the one `name` names (the same string, not an equal one:
    /// the caller holds its name, so no other room's can be at that address), else by name.
    fn find(&mut self, name: &str, slot: Option<usize>) -> Option<&mut Followed> {
        let at = slot
            .filter(|&i| {
                self.slots
                    .get(i)
                    .is_some_and(|f| std::ptr::eq::<str>(&*f.name, name))
            })
            .or_else(|| self.by_name.get(name).copied())?;
        self.slots.get_mut(at)
    }

    /// The room's name as kept here and its place.
    fn place(&self, name: &str) -> Option<(RoomName, usize)> {
        self.by_name
            .get_key_value(name)
            .map(|(name, &slot)| (name.clone(), slot))
    }

    /// [`Rooms::place`], with the room.
    fn place_mut(&mut self, name: &str) -> Option<(RoomName, usize, &mut Followed)> {
        let (name, slot) = self.place(name)?;
        Some((name, slot, self.slots.get_mut(slot)?))
    }

    fn insert(&mut self, followed: Followed) -> &mut Followed {
        let name = followed.name.clone();
        let slot = self.slots.insert(followed);
        if let Some(old) = self.by_name.insert(name, slot) {
            self.slots.remove(old);
        }
        self.counted_now();
        &mut self.slots[slot]
    }

    fn remove(&mut self, name: &str) -> Option<Followed> {
        let slot = self.by_name.remove(name)?;
        let followed = self.slots.try_remove(slot);
        self.counted_now();
        followed
    }

    fn iter(&self) -> impl Iterator<Item = (&RoomName, &Followed)> {
        self.slots.iter().map(|(_, f)| (&f.name, f))
    }

    fn names(&self) -> impl Iterator<Item = &RoomName> {
        self.by_name.keys()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Followed> {
        self.slots.iter_mut().map(|(_, f)| f)
    }
}

/// This node's connections in a room, by number: a relayed message finds its receiver's
/// outlet here, beside the room it was applied to, instead of in the hub-wide map of
/// connections (two more cache misses for each message, with 19,000 connections). Most rooms
/// have two of this node's connections or fewer; those are kept inline.
type Locals = SmallVec<[(u64, Arc<Outlet>); 2]>;

/// One of this node's connections.
#[derive(Debug)]
struct Local {
    /// Its number, queue and socket.
    outlet: Arc<Outlet>,
    /// Its token's room (the room map's key, when it was followed as the connection joined)
    /// and role.
    room: RoomName,
    role: Role,
    /// The rest of whom its token admitted, when it asked to resume and until its session is
    /// bound: a resume that finds nothing to resume joins afresh with it. A bound session has
    /// its own (a resumed one keeps what it first joined with).
    joining: Option<Box<Joining>>,
    /// The session it holds, once its join or resume is applied.
    peer: Option<PeerId>,
    /// Its session moved to another connection.
    detached: bool,
}

/// What of a connection's token a join needs besides the room and role (not the token's own id
/// or expiry, which each connection would otherwise keep).
#[derive(Debug)]
struct Joining {
    name: String,
    sub: String,
    inv: Option<String>,
}

impl Joining {
    fn of(claims: &Claims) -> Box<Joining> {
        Box::new(Joining {
            name: claims.name.clone(),
            sub: claims.sub.clone(),
            inv: claims.inv.clone(),
        })
    }

    fn view(claims: &Claims) -> JoiningRef<'_> {
        JoiningRef {
            name: &claims.name,
            sub: &claims.sub,
            inv: claims.inv.as_deref(),
        }
    }

    fn borrowed(&self) -> JoiningRef<'_> {
        JoiningRef {
            name: &self.name,
            sub: &self.sub,
            inv: self.inv.as_deref(),
        }
    }
}

/// A [`Joining`], or the same from a token, borrowed.
#[derive(Debug, Clone, Copy)]
struct JoiningRef<'a> {
    name: &'a str,
    sub: &'a str,
    inv: Option<&'a str>,
}

/// A room this node follows.
///
/// In this order, what a relayed message reads or writes: its numbers, this node's
/// connections, then the replica (which begins with what it reads).
#[derive(Debug)]
#[repr(C)]
struct Followed {
    /// The last log position applied.
    pos: u64,
    /// Events applied since the last snapshot, and when that was (ms).
    unsaved: u64,
    /// This node's connections in the room (each also in [`State::conns`]).
    locals: Locals,
    replica: Replica,
    /// Its name, the one the room map finds it by.
    name: RoomName,
    saved_at: u64,
    /// Since when no connection of this node is in the room.
    idle_since: Option<Instant>,
    /// The time of the last tick published for it, so one deadline is ticked once.
    ticked_at: u64,
    /// The replica's next deadline and the nodes its sessions are on, kept up to date as
    /// events that change sessions are applied: the once-a-second sweep over every room reads
    /// these instead of every session (with 10,000 rooms, reading the sessions held the lock
    /// for 9 ms a second, which every relayed message waited behind).
    deadline: Option<u64>,
    nodes: Vec<NodeId>,
}

impl Followed {
    fn new(name: RoomName, replica: Replica, pos: u64, now: u64, ctx: &Ctx<'_>) -> Followed {
        let mut f = Followed {
            name,
            replica,
            pos,
            unsaved: 0,
            saved_at: now,
            idle_since: None,
            ticked_at: 0,
            deadline: None,
            nodes: Vec::new(),
            locals: Locals::new(),
        };
        f.sessions_changed(ctx);
        f
    }

    fn sessions_changed(&mut self, ctx: &Ctx<'_>) {
        self.deadline = self.replica.next_deadline(ctx);
        self.nodes = self.replica.nodes();
    }
}

/// Staff asked a tablet to run its check; the answer goes to `reply`.
#[derive(Debug)]
struct PendingCheck {
    sub: String,
    reply: oneshot::Sender<CheckReport>,
}

#[derive(Debug, Default)]
struct State {
    /// The rooms, by place and by name, and the connections (boxed: a map's table has room
    /// for more entries than it holds, up to twice, and each slot is as large as its value).
    /// Both maps are foldhash, not std's SipHash (their keys are the server's own numbers and
    /// rooms named in signed tokens; foldhash is seeded per process all the same).
    rooms: Rooms,
    conns: FastMap<u64, Box<Local>>,
    /// Withdrawn invitations: their tokens are refused.
    revoked: HashSet<String>,
    /// Residents' rules by the tablet's subject.
    rules: HashMap<String, Rules>,
    /// Checks staff asked for, by request id.
    checks: HashMap<String, PendingCheck>,
    /// What applying an event gave, between applying and carrying it out: one buffer kept
    /// rather than one made for every message.
    outs: Vec<Out>,
}

/// A connected resident's tablet, for the staff console.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct OnlineTablet {
    pub name: String,
    pub room: String,
    pub since_ms: u64,
    pub check: Option<CheckReport>,
}

/// Events applied since a room's last snapshot before another is written.
const SNAPSHOT_EVERY: u64 = 500;
/// Longest time a followed room's changes go without a snapshot, ms.
const SNAPSHOT_AGE_MS: u64 = 30_000;
/// How long a node keeps following a room none of its connections is in.
const UNFOLLOW_AFTER: Duration = Duration::from_secs(30);
/// How long a draining node lets the backplane take a shutdown notice before sending it
/// directly.
const DRAIN_PUBLISH: Duration = Duration::from_secs(1);

/// Shared state of one node.
pub struct Hub {
    pub(crate) options: ServerOptions,
    pub(crate) keys: TokenKeys,
    pub(crate) metrics: Metrics,
    /// Cancelled when the node starts draining.
    pub(crate) shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Invitations, tablets and the audit trail.
    pub(crate) store: Arc<Store>,
    /// Makes changes to the store (shared between servers on NATS).
    pub(crate) changes: Arc<crate::persist::Changes>,
    /// The rate limiters' clock, made once: making one runs `cpuid` several times (a trap to
    /// the hypervisor in a VM), which took a quarter of the server's CPU in a connection storm
    /// when each connection's limiter made its own.
    pub(crate) clock: governor::clock::DefaultClock,
    /// Limits invitation codes tried, across all clients.
    pub(crate) redeem_limiter: governor::DefaultDirectRateLimiter,
    /// Limits invitation codes tried per client address.
    pub(crate) redeem_by_address: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Where the server listens, for invitation links when no public URL is set.
    pub(crate) listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// This node's id.
    pub(crate) node: NodeId,
    pub(crate) resume: ResumeKeys,
    pub(crate) backplane: Arc<dyn Backplane>,
    /// Writes for the store, saved off the lock by [`crate::persist::run`].
    writes: mpsc::UnboundedSender<Write>,
    /// Events decided under the lock, published by [`Hub::run_followups`].
    followups: mpsc::UnboundedSender<(String, Event)>,
    /// A room is set up to be followed, or let go, by one task at a time; different rooms at
    /// once (a node taking over many rooms waits a NATS round trip for each, all together).
    following: KeyLocks,
    state: Mutex<State>,
    next_conn: AtomicU64,
    /// Set by [`Hub::stop_connections`].
    stopped: AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("node", &self.node).finish()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a node keeps receiving until it publishes it.
pub(crate) type Followups = mpsc::UnboundedReceiver<(String, Event)>;

impl Hub {
    /// A node over `store` and `backplane`, loading the revoked invitations and residents' rules
    /// it enforces. The first receiver must be handed to [`crate::persist::run`], the second to
    /// [`Hub::run_followups`]; then [`Hub::attach`] the Arc.
    pub(crate) fn new(
        options: ServerOptions,
        store: Arc<Store>,
        backplane: Arc<dyn Backplane>,
        changes: Arc<crate::persist::Changes>,
    ) -> Result<(Hub, mpsc::UnboundedReceiver<Write>, Followups), StoreError> {
        let metrics = Metrics::new();
        let state = State {
            rooms: Rooms::counted(metrics.rooms.clone()),
            revoked: store.revoked_ids()?,
            rules: store.all_rules()?.into_iter().collect(),
            ..State::default()
        };
        let (writes, rx) = mpsc::unbounded_channel();
        let (followups, followups_rx) = mpsc::unbounded_channel();
        let per_second = std::num::NonZeroU32::new(options.limits.redeem_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let per_address = std::num::NonZeroU32::new(options.limits.redeem_per_address)
            .unwrap_or(std::num::NonZeroU32::MIN);
        // Unique to this process even when the operator names the node: a restarted node
        // numbers its connections from 1 again, and must not be taken for its earlier self.
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let node = match &options.node_id {
            Some(name) => format!("{name}.{}", &instance[..6]),
            None => instance[..12].to_owned(),
        };
        let clock = governor::clock::DefaultClock::default();
        let hub = Hub {
            redeem_limiter: governor::RateLimiter::direct_with_clock(
                governor::Quota::per_second(per_second),
                clock.clone(),
            ),
            redeem_by_address: governor::RateLimiter::new(
                governor::Quota::per_second(per_address).allow_burst(per_address.saturating_mul(
                    std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN),
                )),
                governor::state::keyed::DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock,
            listen: std::sync::OnceLock::new(),
            keys: TokenKeys::new(&options.secret),
            resume: ResumeKeys::new(&options.secret),
            options,
            metrics,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            store,
            changes,
            node: node.into(),
            backplane,
            writes,
            followups,
            following: KeyLocks::default(),
            state: Mutex::new(state),
            next_conn: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
        };
        Ok((hub, rx, followups_rx))
    }

    /// Hands the backplane this node as the place for what it receives.
    pub(crate) fn attach(self: &Arc<Self>) {
        let sink: Arc<dyn Sink> = self.clone();
        self.backplane.attach(Arc::downgrade(&sink));
        // Withdrawals and rules from the shared log: every node enforces them even when it
        // missed their broadcast (it was reconnecting to NATS, say).
        if let Some(mut notices) = self.changes.take_notices() {
            let hub = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(msg) = notices.recv().await {
                    let Some(hub) = hub.upgrade() else { return };
                    hub.control(msg);
                }
            });
        }
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

    /// This node's reference to its connection `id`.
    pub(crate) fn conn_ref(&self, id: u64) -> ConnRef {
        ConnRef {
            node: self.node.clone(),
            conn: id,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            resume_grace_ms: ms(self.options.limits.resume_grace),
            waiting_grace_ms: ms(self.options.limits.waiting_grace),
            replay: self.options.limits.replay_buffer,
            ice: &self.options.ice,
            resume: &self.resume,
        }
    }

    /// The last `seq` sent to connection `conn`'s session in `room` and how many messages are
    /// kept for its replay; `None` when none are.
    pub(crate) fn unacked(&self, room: &str, conn: u64) -> Option<(u64, usize)> {
        let state = self.lock();
        let peer = state.conns.get(&conn)?.peer.as_ref()?;
        state
            .rooms
            .get(room)?
            .replica
            .unacked(peer, &self.conn_ref(conn))
    }

    /// Appends an event to `room`'s log.
    ///
    /// Not an `async fn`: the backplane's future is boxed as it is made, so what waits for it
    /// holds a pointer, not the event (each connection's task is as large as what it awaits).
    pub(crate) fn publish<'a>(
        &'a self,
        room: &'a str,
        event: Event,
    ) -> impl Future<Output = Result<(), ErrorCode>> + Send + 'a {
        self.publish_in(room, None, event)
    }

    /// [`Hub::publish`], to the room at `slot` in this node's room map when that is `room`'s
    /// place (the place [`Hub::join`] gave, with `room` as the name it gave).
    pub(crate) fn publish_in<'a>(
        &'a self,
        room: &'a str,
        slot: Option<usize>,
        event: Event,
    ) -> impl Future<Output = Result<(), ErrorCode>> + Send + 'a {
        match self.backplane.publish_now(room, slot, &self.node, event) {
            None => Either::Left(std::future::ready(Ok(()))),
            Some(event) => Either::Right(self.backplane.publish(room, &self.node, event).map_err(
                move |e| {
                    warn!(room, error = %e, "an event could not be published");
                    ErrorCode::Unavailable
                },
            )),
        }
    }

    /// Starts following `room` if this node does not yet: its latest snapshot, then its log.
    async fn follow(&self, room: &str) -> Result<(), ErrorCode> {
        if self.lock().rooms.contains_key(room) {
            return Ok(());
        }
        let _one = self.following.lock(room).await;
        if self.lock().rooms.contains_key(room) {
            return Ok(());
        }
        let unavailable = |e: crate::backplane::BackplaneError| {
            warn!(room, error = %e, "a room could not be followed");
            ErrorCode::Unavailable
        };
        let snapshot = self.backplane.snapshot(room).await.map_err(unavailable)?;
        let (replica, pos) = match snapshot {
            Some(s) => match serde_json::from_slice::<Replica>(&s.state) {
                // The room's limits are this server's, not those a snapshot was taken with
                // (an older version's, or before the options changed).
                Ok(mut r) => {
                    r.set_capacity(self.options.limits.capacity());
                    (r, s.pos)
                }
                Err(e) => {
                    // A snapshot this version cannot read: the log alone rebuilds the room as
                    // far as it reaches back.
                    warn!(error = %e, "a room snapshot could not be read; reading the log");
                    (self.empty_room(room), 0)
                }
            },
            None => (self.empty_room(room), 0),
        };
        self.lock().rooms.insert(Followed::new(
            RoomName::from(room),
            replica,
            pos,
            unix_ms(),
            &self.ctx(),
        ));
        if let Err(e) = self.backplane.follow(room, pos).await {
            self.lock().rooms.remove(room);
            return Err(unavailable(e));
        }
        Ok(())
    }

    fn empty_room(&self, room: &str) -> Replica {
        Replica::new(room, self.options.limits.capacity())
    }

    /// Puts a connection with a verified token into its room: as the session it resumes when
    /// `resume` names one this client may take up, or as a new session. Its `welcome` (or
    /// `resumed`) comes through the room's log. Gives the room's name as the hub keeps it and
    /// its place, for the connection to name the room by (see [`Hub::publish_in`]).
    pub(crate) async fn join(
        &self,
        claims: &Claims,
        conn: Arc<Outlet>,
        resume: Option<Resume>,
    ) -> Result<(RoomName, usize), ErrorCode> {
        if claims
            .inv
            .as_ref()
            .is_some_and(|i| self.lock().revoked.contains(i))
        {
            return Err(ErrorCode::Revoked);
        }
        let id = conn.id();
        let resume = resume.filter(|r| self.resume.verify(&r.peer, &r.secret));
        let (event, (room, slot)) = loop {
            self.follow(&claims.room).await?;
            let mut state = self.lock();
            // The sweep may have let the room go since: follow it again first.
            let State {
                rooms,
                conns,
                rules,
                ..
            } = &mut *state;
            if let Some((room, slot, followed)) = rooms.place_mut(&claims.room) {
                let (event, joining) = match resume {
                    Some(r) => {
                        let resume = Event::Resume {
                            peer: r.peer,
                            sub: claims.sub.clone(),
                            conn: self.conn_ref(id),
                            last_seq: r.last_seq,
                            at: unix_ms(),
                        };
                        (resume, Some(Joining::of(claims)))
                    }
                    None => {
                        let who = Joining::view(claims);
                        (self.join_event_locked(rules, claims.role, who, id), None)
                    }
                };
                followed.locals.push((id, conn.clone()));
                conns.insert(
                    id,
                    Box::new(Local {
                        outlet: conn,
                        room: room.clone(),
                        role: claims.role,
                        joining,
                        peer: None,
                        detached: false,
                    }),
                );
                break (event, (room, slot));
            }
        };
        let published = self.publish_in(&room, Some(slot), event).await;
        if published.is_err() {
            unregister(&mut self.lock(), id);
        }
        published.map(|()| (room, slot))
    }

    /// A new session for `conn` (with a resident's rules as this node has them).
    fn join_event_locked(
        &self,
        rules: &HashMap<String, Rules>,
        role: Role,
        who: JoiningRef<'_>,
        conn: u64,
    ) -> Event {
        Event::Join {
            who: Entrant {
                peer: new_peer_id(),
                sub: who.sub.to_owned(),
                name: who.name.to_owned(),
                role,
            },
            inv: who.inv.map(str::to_owned),
            conn: self.conn_ref(conn),
            at: unix_ms(),
            rules: (role == Role::Resident)
                .then(|| rules.get(who.sub).cloned())
                .flatten(),
        }
    }

    /// Connection `conn`'s task is gone without ending (it panicked, or the runtime is
    /// stopping): its entry goes, so that nothing keeps its socket open or writes to it, and a
    /// session it held is held as if it dropped. Nothing, when it ended ([`Hub::ended`]).
    pub(crate) fn forget(&self, conn: u64) {
        let local = unregister(&mut self.lock(), conn);
        if let Some(local) = local
            && local.peer.is_some()
            && !local.detached
        {
            self.orphaned(&local.room, conn);
        }
    }

    /// The connection ended. Unless its session moved on, the session is held for the grace
    /// period. Also after a `leave`: it is in the log before this, and when it was applied the
    /// session is gone and this changes nothing; when it was not (a number already applied,
    /// which the log drops) the session must still end, not stay bound to no connection.
    pub(crate) async fn ended(&self, conn: u64, room: &str) {
        let local = unregister(&mut self.lock(), conn);
        let Some(local) = local else {
            return;
        };
        if local.detached || local.peer.is_none() {
            return;
        }
        let event = Event::Gone {
            conn: self.conn_ref(conn),
            at: unix_ms(),
        };
        if self.publish(room, event).await.is_err() {
            // The backplane is unreachable; when this node is declared lost (or its
            // connections' rooms next hear from it) the session is held the same way.
            debug!("a departure could not be published");
        }
    }

    /// Publishes what was decided under the lock, in order, until the node stops.
    pub(crate) async fn run_followups(self: Arc<Self>, mut rx: Followups) {
        while let Some((room, event)) = rx.recv().await {
            let _ = self.publish(&room, event).await;
        }
    }

    fn followup(&self, room: &str, event: Event) {
        let _ = self.followups.send((room.to_owned(), event));
    }

    /// A session was bound to this node's connection `conn`, which has ended already (it closed
    /// before its `welcome`, or its join reached the log after this node gave up waiting): the
    /// session is held as if that connection had dropped, so it ends after the grace period
    /// instead of staying in the room for good.
    fn orphaned(&self, room: &str, conn: u64) {
        debug!(
            conn,
            room, "a session was bound to a connection that has ended"
        );
        self.followup(
            room,
            Event::Gone {
                conn: self.conn_ref(conn),
                at: unix_ms(),
            },
        );
    }

    /// Queues an error and a close frame; the connection's task ends after writing them.
    pub(crate) fn close_conn(&self, conn: &Outlet, code: ErrorCode, message: &str) {
        self.metrics.error(code);
        let error = ServerMessage::Error {
            code,
            message: message.to_owned(),
            peer: None,
        };
        let Some(text) = encode(&error) else {
            conn.mailbox.cut();
            return;
        };
        if conn.mailbox.push_or_cut(Outbound::message(text)) {
            conn.mailbox.push_or_cut(Outbound::Close {
                code: CLOSE_POLICY,
                reason: code.as_str(),
            });
        }
    }

    /// Carries out what applying an event decided: what is for this node's connections, and
    /// the records when this node published the event. The first message for a connection is
    /// queued for the caller to `deliver` (see [`Outlet::deliver`]) once it has let go of the
    /// state; the others wake their connections to write them.
    #[allow(
        clippy::too_many_arguments,
        reason = "the state's parts, borrowed apart"
    )]
    fn carry_out(
        &self,
        conns: &mut FastMap<u64, Box<Local>>,
        rules: &HashMap<String, Rules>,
        locals: &Locals,
        room: &str,
        outs: &mut Vec<Out>,
        mine: bool,
        deliver: &mut Option<Arc<Outlet>>,
    ) {
        for out in outs.drain(..) {
            match out {
                Out::Msg {
                    to,
                    seq,
                    text,
                    read_at,
                } => {
                    if to.node != self.node {
                        continue;
                    }
                    // The room's own list first; the hub's map has every connection (one that
                    // joined while the room was let go and followed again, say).
                    let outlet = match locals.iter().find(|(id, _)| *id == to.conn) {
                        Some((_, outlet)) => outlet,
                        None => match conns.get(&to.conn) {
                            Some(local) => &local.outlet,
                            None => continue,
                        },
                    };
                    let outbound = Outbound::in_stream(text, seq, read_at);
                    let queued = if deliver.is_none() {
                        *deliver = Some(outlet.clone());
                        outlet.queue(outbound)
                    } else {
                        outlet.mailbox.push_or_cut(outbound)
                    };
                    if !queued {
                        warn!(
                            conn = to.conn,
                            "outbound queue full; disconnecting slow client"
                        );
                    }
                }
                Out::Close { to, code, message } => {
                    if to.node == self.node
                        && let Some(local) = conns.get_mut(&to.conn)
                    {
                        local.detached = true;
                        self.close_conn(&local.outlet, code, &message);
                    }
                }
                Out::Detach { to } => {
                    if to.node == self.node
                        && let Some(local) = conns.get_mut(&to.conn)
                    {
                        debug!(conn = to.conn, "session resumed elsewhere; closing");
                        local.detached = true;
                        local.outlet.mailbox.push_or_cut(Outbound::Close {
                            code: CLOSE_GOING_AWAY,
                            reason: "resumed elsewhere",
                        });
                    }
                }
                Out::Bound { to, peer, waiting } => {
                    if to.node != self.node {
                        continue;
                    }
                    if let Some(local) = conns.get_mut(&to.conn) {
                        info!(conn = to.conn, peer = %peer, room, role = %local.role, waiting, "in the room");
                        local.peer = Some(peer);
                        local.joining = None;
                    } else {
                        self.orphaned(room, to.conn);
                    }
                }
                Out::Resumed {
                    to,
                    peer,
                    acked,
                    replay,
                    snapshot,
                } => {
                    if to.node != self.node {
                        continue;
                    }
                    let Some(local) = conns.get(&to.conn) else {
                        self.orphaned(room, to.conn);
                        continue;
                    };
                    self.metrics.resumes.increment(1);
                    info!(conn = to.conn, peer = %peer, replayed = replay.len(), snapshot, "session resumed");
                    let resumed = ServerMessage::Resumed {
                        peer,
                        acked,
                        replayed: replay.len() as u64,
                        snapshot,
                    };
                    // Past the queue's bound if need be: a replay may hold more messages than the
                    // queue (up to the replay buffer), and all of it is queued at once.
                    let mailbox = &local.outlet.mailbox;
                    if let Some(t) = encode(&resumed) {
                        mailbox.push_beyond(Outbound::message(t));
                    }
                    for (seq, text) in replay {
                        mailbox.push_beyond(Outbound::in_stream(text, seq, None));
                    }
                }
                Out::NotResumed { to } => {
                    if to.node == self.node
                        && let Some(local) = conns.get(&to.conn)
                    {
                        if let Some(who) = &local.joining {
                            info!(conn = to.conn, "nothing to resume; joining afresh");
                            let event =
                                self.join_event_locked(rules, local.role, who.borrowed(), to.conn);
                            self.followup(room, event);
                        } else {
                            // Its session is bound already: not an answer to its own resume.
                            warn!(
                                conn = to.conn,
                                "a resume's answer came for a bound connection"
                            );
                        }
                    }
                }
                Out::Audit(record) => {
                    if mine {
                        self.write(Write::Audit(record));
                    }
                }
                Out::Tablet(change) => {
                    if mine {
                        self.write(Write::Tablet(change));
                    }
                }
                Out::CheckAnswer {
                    request,
                    sub,
                    report,
                } => {
                    if mine {
                        let backplane = self.backplane.clone();
                        tokio::spawn(async move {
                            let msg = Control::CheckAnswer {
                                request,
                                sub,
                                report,
                            };
                            if let Err(e) = backplane.broadcast(msg).await {
                                warn!(error = %e, "a check answer could not be passed on");
                            }
                        });
                    }
                }
            }
        }
    }

    /// Once a second: this node is alive; held sessions whose grace is over end; sessions on
    /// nodes that are gone are held; rooms get snapshots; rooms nobody here is in are let go.
    pub(crate) async fn housekeeping(&self) {
        self.redeem_by_address.retain_recent();
        self.metrics.upkeep();
        if let Err(e) = self
            .backplane
            .heartbeat(&self.node, self.shutdown.is_cancelled())
            .await
        {
            debug!(error = %e, "heartbeat failed");
        }
        let live = self.backplane.live_nodes().await;
        let now = unix_ms();
        let mut ticks = Vec::new();
        let mut lost = Vec::new();
        let mut snapshots = Vec::new();
        let mut unfollow = Vec::new();
        {
            let mut state = self.lock();
            let State { rooms, conns, .. } = &mut *state;
            let shared = self.backplane.shared();
            // Once per tick, not once per room: rooms times connections would hold the lock
            // for most of a second with tens of thousands of each.
            let served = if shared {
                served_rooms(conns)
            } else {
                HashSet::new()
            };
            // One process alone has no other node to lose.
            let live = live.as_ref().filter(|_| shared);
            for f in rooms.iter_mut() {
                let name = &f.name;
                if let Some(deadline) = f.deadline
                    && deadline <= now
                    && f.ticked_at < deadline
                {
                    f.ticked_at = now;
                    ticks.push(name.clone());
                }
                if !shared {
                    continue;
                }
                if let Some(live) = live {
                    for node in &f.nodes {
                        if !live.contains(node) {
                            lost.push((name.clone(), node.clone()));
                        }
                    }
                }
                if f.unsaved > 0
                    && (f.unsaved >= SNAPSHOT_EVERY
                        || now.saturating_sub(f.saved_at) >= SNAPSHOT_AGE_MS)
                    && let Ok(bytes) = serde_json::to_vec(&f.replica)
                {
                    f.unsaved = 0;
                    f.saved_at = now;
                    snapshots.push((
                        name.clone(),
                        Snapshot {
                            pos: f.pos,
                            state: bytes,
                        },
                    ));
                }
                if served.contains(&**name) {
                    f.idle_since = None;
                } else {
                    let since = *f.idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNFOLLOW_AFTER {
                        unfollow.push(name.clone());
                    }
                }
            }
        }
        for room in ticks {
            if self.publish(&room, Event::Tick { at: now }).await.is_err()
                && let Some(f) = self.lock().rooms.get_mut(&room)
            {
                // Not in the log: the next sweep tries again.
                f.ticked_at = 0;
            }
        }
        for (room, node) in lost {
            info!(node = %node, room = %room, "a node is gone; its sessions are held");
            let _ = self.publish(&room, Event::NodeLost { node, at: now }).await;
        }
        for (room, snapshot) in snapshots {
            if let Err(e) = self.backplane.save_snapshot(&room, snapshot).await {
                debug!(error = %e, "a snapshot could not be saved");
            }
        }
        if !unfollow.is_empty() {
            // No `follow` of these rooms starts meanwhile, and a room is let go only if no
            // connection of this node joined it since it was found idle (`join` registers its
            // connection under the same lock, and only while the room is followed): a room
            // let go here is followed afresh, from its snapshot, by the next join.
            let mut held = Vec::with_capacity(unfollow.len());
            for room in &unfollow {
                held.push(self.following.lock(room).await);
            }
            let gone: Vec<RoomName> = {
                let mut state = self.lock();
                let State { rooms, conns, .. } = &mut *state;
                let served = served_rooms(conns);
                unfollow
                    .into_iter()
                    .filter(|name| !served.contains(&**name) && rooms.remove(name).is_some())
                    .collect()
            };
            for room in gone {
                self.backplane.unfollow(&room).await;
            }
            drop(held);
        }
    }

    /// Tells every connection of this node to reconnect (to another node, through the load
    /// balancer) after a delay spread over a window that grows with their number, so they do
    /// not all arrive at once; their sessions stay resumable.
    pub(crate) async fn drain(&self) {
        let conns: Vec<(u64, RoomName)> = self
            .lock()
            .conns
            .iter()
            .filter(|(_, l)| l.peer.is_some())
            .map(|(id, l)| (*id, l.room.clone()))
            .collect();
        let n = conns.len() as u64;
        // At least 250 ms, but within half the drain time, however short that was set.
        let window = (n * 5)
            .max(250)
            .min(ms(self.options.limits.shutdown_grace) / 2)
            .max(1);
        info!(connections = n, window_ms = window, "draining");
        // Every notice at once, each through the room's log when the backplane takes it soon;
        // otherwise (NATS gone, say) directly, so a node can always drain.
        let notices = conns.into_iter().map(|(id, room)| async move {
            let retry_after_ms = rand::random_range(0..window);
            let event = Event::Tell {
                conn: self.conn_ref(id),
                msg: ServerMessage::Shutdown { retry_after_ms },
            };
            let logged = tokio::time::timeout(DRAIN_PUBLISH, self.publish(&room, event)).await;
            if !matches!(logged, Ok(Ok(()))) {
                let conn = self.lock().conns.get(&id).map(|l| l.outlet.clone());
                if let (Some(conn), Some(text)) =
                    (conn, encode(&ServerMessage::Shutdown { retry_after_ms }))
                {
                    conn.mailbox.push(Outbound::message(text));
                }
            }
        });
        futures_util::future::join_all(notices).await;
    }

    /// When rooms live in this process only: ends every session as the process stops, so the
    /// audit trail records their leaving.
    pub(crate) async fn end_all(&self) {
        if self.backplane.shared() {
            return;
        }
        let rooms: Vec<RoomName> = self.lock().rooms.names().cloned().collect();
        let at = unix_ms();
        for room in rooms {
            let _ = self.publish(&room, Event::End { at }).await;
        }
    }

    /// Withdraws an invitation on every node: its tokens are refused from now on, and everyone
    /// connected with one is disconnected with `revoked` (a waiting patient loses their place).
    pub(crate) async fn revoke(&self, inv: &str) {
        let msg = Control::Revoke {
            inv: inv.to_owned(),
        };
        self.everywhere(msg, "a withdrawal could not be passed on to other nodes")
            .await;
    }

    /// Carries out `msg` here at once, then tells the other nodes (the shared store's log
    /// reaches a node that misses this broadcast; each node acts on it once).
    async fn everywhere(&self, msg: Control, not_passed_on: &str) {
        self.control(msg.clone());
        if let Err(e) = self.backplane.broadcast(msg).await {
            warn!(error = %e, "{not_passed_on}");
        }
    }

    /// New rules for resident `sub` on every node: enforced from now on and sent to its tablets.
    pub(crate) async fn set_rules(&self, sub: &str, rules: Rules) {
        let msg = Control::Rules {
            sub: sub.to_owned(),
            rules,
        };
        self.everywhere(msg, "new rules could not be passed on to other nodes")
            .await;
    }

    /// Asks the connected tablet(s) of resident `sub` to run their check. `Offline` when none
    /// is connected. The caller must [`Hub::forget_check`] the request when it stops waiting.
    pub(crate) async fn request_check(
        &self,
        sub: &str,
    ) -> Result<(String, oneshot::Receiver<CheckReport>), ErrorCode> {
        if !self.online_tablets_everywhere().await.contains_key(sub) {
            return Err(ErrorCode::Offline);
        }
        let request = uuid::Uuid::new_v4().simple().to_string();
        let (reply, rx) = oneshot::channel();
        self.lock().checks.insert(
            request.clone(),
            PendingCheck {
                sub: sub.to_owned(),
                reply,
            },
        );
        let msg = Control::RunCheck {
            sub: sub.to_owned(),
            request: request.clone(),
        };
        if self.backplane.broadcast(msg).await.is_err() {
            self.forget_check(&request);
            return Err(ErrorCode::Unavailable);
        }
        Ok((request, rx))
    }

    /// Stops waiting for a check's answer.
    pub(crate) fn forget_check(&self, request: &str) {
        self.lock().checks.remove(request);
    }

    /// Residents' tablets connected now, by subject (the earliest connection when several), as
    /// the rooms this node follows have them.
    pub(crate) fn online_tablets(&self) -> HashMap<String, OnlineTablet> {
        let state = self.lock();
        merge_online(state.rooms.iter().flat_map(|(room, f)| {
            f.replica
                .tablets()
                .map(|(sub, name, since_ms, check)| {
                    (
                        sub.to_owned(),
                        OnlineTablet {
                            name: name.to_owned(),
                            room: room.to_string(),
                            since_ms,
                            check,
                        },
                    )
                })
                .collect::<Vec<_>>()
        }))
    }

    /// Residents' tablets connected now to any node, by subject: every node's view when the
    /// backplane can ask them (a tablet's room may be served by other nodes only), else this
    /// node's.
    pub(crate) async fn online_tablets_everywhere(&self) -> HashMap<String, OnlineTablet> {
        match self.backplane.tablets_online().await {
            Some(answers) => merge_online(answers.into_iter().chain(self.online_tablets())),
            None => self.online_tablets(),
        }
    }

    /// Records an audit event that no room caused (staff actions).
    pub(crate) fn audit(&self, record: AuditRecord) {
        self.write(Write::Audit(record));
    }

    /// Number of this node's connections that hold a session.
    pub fn peer_count(&self) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|l| l.peer.is_some() && !l.detached)
            .count()
    }

    /// Draining is over: a connection that joins now is closed at once.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Number of this node's connections, with or without a session.
    pub(crate) fn conn_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Draining is over: every connection still open is closed as going away (its session
    /// stays resumable on another node); one whose queue is full is cut off. One still joining
    /// is closed as it starts (see [`Hub::is_stopped`]).
    pub(crate) fn stop_connections(&self) {
        self.stopped.store(true, Ordering::Release);
        for local in self.lock().conns.values() {
            let close = Outbound::Close {
                code: CLOSE_GOING_AWAY,
                reason: ErrorCode::ShuttingDown.as_str(),
            };
            local.outlet.mailbox.push_or_cut(close);
        }
    }
}

/// One entry per tablet: the earliest connection and the latest check of several.
fn merge_online(
    tablets: impl IntoIterator<Item = (String, OnlineTablet)>,
) -> HashMap<String, OnlineTablet> {
    let mut out: HashMap<String, OnlineTablet> = HashMap::new();
    for (sub, t) in tablets {
        match out.entry(sub) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(t);
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let entry = o.get_mut();
                entry.since_ms = entry.since_ms.min(t.since_ms);
                if t.check.map(|c| c.at) > entry.check.map(|c| c.at) {
                    entry.check = t.check;
                }
            }
        }
    }
    out
}

/// A fresh peer id: 128 random bits in 22 characters of URL-safe base64, short enough for a
/// [`PeerId`] to hold it inline.
fn new_peer_id() -> PeerId {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    PeerId::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The rooms this node's connections are in.
fn served_rooms(conns: &FastMap<u64, Box<Local>>) -> HashSet<&str> {
    conns.values().map(|l| &*l.room).collect()
}

/// Takes connection `conn` out of the hub: out of the map of connections and its room's.
fn unregister(state: &mut State, conn: u64) -> Option<Box<Local>> {
    let local = state.conns.remove(&conn)?;
    if let Some(followed) = state.rooms.get_mut(&local.room) {
        followed.locals.retain(|(id, _)| *id != conn);
    }
    Some(local)
}

impl Sink for Hub {
    fn tablets_online(&self) -> Vec<(String, OnlineTablet)> {
        self.online_tablets().into_iter().collect()
    }

    fn event(&self, room: &str, slot: Option<usize>, pos: u64, origin: &str, event: Event) {
        let shared = self.backplane.shared();
        let mut state = self.lock();
        let State {
            rooms,
            conns,
            rules,
            outs: kept,
            ..
        } = &mut *state;
        // One lookup for every message; the name is copied only for a room's first event.
        let followed = match rooms.find(room, slot) {
            Some(followed) => followed,
            // Not followed (any more): another node serves it.
            None if shared => return,
            None => rooms.insert(Followed::new(
                RoomName::from(room),
                Replica::new(room, self.options.limits.capacity()),
                0,
                unix_ms(),
                &self.ctx(),
            )),
        };
        if shared {
            if pos <= followed.pos {
                return;
            }
            followed.pos = pos;
        } else {
            followed.pos += 1;
        }
        followed.unsaved += 1;
        // A signal changes no session: the relay's hot path skips the bookkeeping.
        let sessions_change = !matches!(event, Event::Signal { .. } | Event::Ack { .. });
        let ctx = self.ctx();
        let mut outs = std::mem::take(kept);
        followed.replica.apply(event, &ctx, &mut outs);
        if sessions_change {
            followed.sessions_changed(&ctx);
        }
        let empty = followed.replica.is_empty();
        let mut deliver = None;
        self.carry_out(
            conns,
            rules,
            &followed.locals,
            room,
            &mut outs,
            origin == &*self.node,
            &mut deliver,
        );
        *kept = outs;
        if empty && !shared {
            rooms.remove(room);
        }
        drop(state);
        // On the one-process backplane this is the publishing connection's task, which writes
        // a message it relays itself. On NATS it is the one task that reads the stream for
        // every room, holding the backplane's lock: the connections' own tasks, on every core,
        // write instead.
        match deliver {
            Some(outlet) if shared => outlet.mailbox.wake(),
            Some(outlet) => outlet.deliver(&self.metrics),
            None => {}
        }
    }

    fn control(&self, msg: Control) {
        let now = unix_ms();
        let mut state = self.lock();
        match msg {
            // Each withdrawal and each change of rules comes more than once (this node's own,
            // its broadcast, the shared log): only the first does anything.
            Control::Revoke { inv } => {
                if !state.revoked.insert(inv.clone()) {
                    return;
                }
                for (name, f) in state.rooms.iter() {
                    if f.replica.concerns(Some(&inv), None) {
                        self.followup(
                            name,
                            Event::Revoke {
                                inv: inv.clone(),
                                at: now,
                            },
                        );
                    }
                }
            }
            Control::Rules { sub, rules } => {
                if state.rules.get(&sub) == Some(&rules) {
                    return;
                }
                state.rules.insert(sub.clone(), rules.clone());
                for (name, f) in state.rooms.iter() {
                    if f.replica.concerns(None, Some(&sub)) {
                        self.followup(
                            name,
                            Event::Rules {
                                sub: sub.clone(),
                                rules: rules.clone(),
                                at: now,
                            },
                        );
                    }
                }
            }
            Control::RunCheck { sub, request } => {
                for (name, f) in state.rooms.iter() {
                    if f.replica.concerns(None, Some(&sub)) {
                        self.followup(
                            name,
                            Event::RunCheck {
                                sub: sub.clone(),
                                request: request.clone(),
                            },
                        );
                    }
                }
            }
            Control::CheckAnswer {
                request,
                sub,
                report,
            } => {
                if state.checks.get(&request).is_some_and(|p| p.sub == sub)
                    && let Some(pending) = state.checks.remove(&request)
                {
                    let _ = pending.reply.send(report);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node on the one-process backplane, with its records in memory.
    async fn node() -> Arc<Hub> {
        let store = Arc::new(Store::open(None).unwrap());
        let backplane: Arc<dyn Backplane> = Arc::new(crate::backplane::memory::Memory::default());
        let changes = Arc::new(
            crate::persist::Changes::start(store.clone(), backplane.clone())
                .await
                .unwrap(),
        );
        let (hub, writes, followups) =
            Hub::new(ServerOptions::default(), store, backplane, changes.clone()).unwrap();
        let hub = Arc::new(hub);
        hub.attach();
        tokio::spawn(hub.clone().run_followups(followups));
        tokio::spawn(crate::persist::run(changes, writes));
        hub
    }

    /// An outlet over one end of a loopback connection, and the other end.
    async fn outlet(hub: &Hub) -> (Arc<Outlet>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let io = accepted.unwrap().0;
        (
            Arc::new(Outlet::new(hub.next_conn_id(), io, 64)),
            client.unwrap(),
        )
    }

    fn claims(room: &str, sub: &str) -> Claims {
        Claims {
            room: room.to_owned(),
            role: Role::Guest,
            name: sub.to_owned(),
            sub: sub.to_owned(),
            exp: u64::MAX,
            jti: sub.to_owned(),
            inv: None,
        }
    }

    /// The connections a room's list holds, by number.
    fn locals(hub: &Hub, room: &str) -> Vec<u64> {
        let state = hub.lock();
        let mut ids: Vec<u64> = state
            .rooms
            .get(room)
            .unwrap()
            .locals
            .iter()
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_room_is_found_at_its_place_only_by_the_name_kept_there_and_else_by_name() {
        let ctx_keys = ResumeKeys::new(&crate::secret::Secret::generate());
        let ice = crate::ice::IceOptions::default();
        let ctx = Ctx {
            resume_grace_ms: 0,
            waiting_grace_ms: 0,
            replay: 1,
            ice: &ice,
            resume: &ctx_keys,
        };
        let room = |name: &str| {
            Followed::new(
                name.into(),
                Replica::new(name, crate::room::Capacity::both(2)),
                0,
                0,
                &ctx,
            )
        };
        let mut rooms = Rooms::default();
        rooms.insert(room("a")).pos = 1;
        rooms.insert(room("b")).pos = 2;
        let (a, a_slot) = rooms.place("a").unwrap();
        let (_, b_slot) = rooms.place("b").unwrap();
        let pos = |f: Option<&mut Followed>| f.map(|f| f.pos);
        assert_eq!(pos(rooms.find(&a, Some(a_slot))), Some(1));
        // A hint that is not this room's place, or another string with the same name: the
        // name decides.
        assert_eq!(pos(rooms.find(&a, Some(b_slot))), Some(1));
        assert_eq!(pos(rooms.find("a", Some(a_slot))), Some(1));
        assert_eq!(pos(rooms.find("b", Some(a_slot))), Some(2));
        assert_eq!(pos(rooms.find("c", Some(a_slot))), None);
        // "a" let go and followed again, "c" now at its old place: an old name finds "a" anew.
        assert_eq!(rooms.remove("a").map(|f| f.pos), Some(1));
        rooms.insert(room("c")).pos = 3;
        assert_eq!(
            rooms.place("c").unwrap().1,
            a_slot,
            "the slab reuses the place"
        );
        assert_eq!(pos(rooms.find(&a, Some(a_slot))), None);
        rooms.insert(room("a")).pos = 4;
        assert_eq!(pos(rooms.find(&a, Some(a_slot))), Some(4));
        assert_eq!(rooms.len(), 3);
        assert_eq!(rooms.iter().map(|(_, f)| f.pos).sum::<u64>(), 9);
    }

    #[tokio::test]
    async fn a_room_lists_its_connections_until_they_end_and_holds_no_outlet_after() {
        let hub = node().await;
        let (a, _a_end) = outlet(&hub).await;
        let (b, _b_end) = outlet(&hub).await;
        let (c, _c_end) = outlet(&hub).await;
        let (room, slot) = hub.join(&claims("r", "a"), a.clone(), None).await.unwrap();
        // The connection names its room by the map's own key, and knows its place.
        assert!(Arc::ptr_eq(&hub.lock().rooms.slots[slot].name, &room));
        assert!(hub.lock().rooms.names().any(|k| Arc::ptr_eq(k, &room)));
        hub.join(&claims("r", "b"), b.clone(), None).await.unwrap();
        hub.join(&claims("r", "c"), c.clone(), None).await.unwrap();
        assert_eq!(locals(&hub, "r"), vec![a.id(), b.id(), c.id()]);

        hub.ended(b.id(), &room).await;
        hub.forget(c.id());
        assert_eq!(locals(&hub, "r"), vec![a.id()]);
        // Nothing of the hub holds the ended connections' outlets (and so their sockets).
        assert_eq!((Arc::strong_count(&b), Arc::strong_count(&c)), (1, 1));
        assert_eq!(
            Arc::strong_count(&a),
            3,
            "the connection map's and the room's"
        );
        hub.ended(a.id(), &room).await;
        assert_eq!(Arc::strong_count(&a), 1);
    }

    #[test]
    fn peer_ids_are_22_url_safe_characters_and_do_not_repeat() {
        let ids: HashSet<String> = (0..1000).map(|_| new_peer_id().into_string()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
        }
    }
}
