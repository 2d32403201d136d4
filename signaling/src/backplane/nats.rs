//! Rooms shared through NATS: each room's log is the subject `hearth.room.<room>` of the
//! JetStream stream `HEARTH_ROOMS` (file storage, so the logs survive a NATS restart). Each node
//! reads the whole stream with one ordered consumer and keeps the events of the rooms it serves;
//! a room it starts to serve is caught up from its snapshot's position by reading that room's
//! subject directly. (One consumer per room per node was the first design: nats-server's CPU grew
//! with the number of consumers, to most of a core with 2,000 of them at 2,000 msg/s.) Snapshots
//! are kept in the key-value bucket
//! `hearth_snapshots`; nodes write a heartbeat entry to the bucket `hearth_nodes`, whose entries
//! expire when they are not refreshed, and watch it to know who is alive; broadcasts go over the
//! core subject `hearth.control`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, RawMessageErrorKind};
use async_nats::jetstream::{self, consumer, kv, stream};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

mod recent;

use super::{Backplane, BackplaneError, Control, Sink, Snapshot, StoreEntry};
use crate::hub::OnlineTablet;
use crate::replica::{Event, NodeId};
use crate::store::StoreOp;
use recent::Recent;

const STREAM: &str = "HEARTH_ROOMS";
const ROOM_PREFIX: &str = "hearth.room.";
const CONTROL: &str = "hearth.control";
/// The store's shared log: every change of invitations, tablets and the audit trail, kept for
/// as long as the records are (a node with an empty copy applies it from the start).
const STORE_STREAM: &str = "HEARTH_STORE";
const STORE_SUBJECT: &str = "hearth.store";
/// Core subject on which every node answers which residents' tablets it holds.
const TABLETS: &str = "hearth.tablets";
/// How long a node waits for the others' tablets before answering with what it has.
const TABLETS_WAIT: Duration = Duration::from_millis(500);
const SNAPSHOTS: &str = "hearth_snapshots";
const NODES: &str = "hearth_nodes";
/// A node not heard from for this long is gone.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a room's events are kept; snapshots are far more recent than this.
const LOG_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a publication may take, attempts included, before it is given up.
const APPEND_WITHIN: Duration = Duration::from_secs(6);
/// How long a stopping node waits for NATS to take what it last published.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

fn nats_error(e: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::Nats(e.to_string())
}

/// A room's name as a subject token and a key (any name: it is encoded).
fn token(room: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room.as_bytes())
}

/// A key-value bucket (on disk, one value per key), made if it is not there.
///
/// Written out rather than with `create_key_value`: async-nats 0.51 asks the server for account
/// details first in a form that NATS 2.9 (Debian 12's) does not answer. The bucket is JetStream's
/// documented key-value layout (a stream `KV_<bucket>` over `$KV.<bucket>.>`), the same that
/// `create_key_value` makes.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<kv::Store, BackplaneError> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(nats_error)?;
    js.get_key_value(name).await.map_err(nats_error)
}

/// One log entry.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The node that published it.
    o: String,
    e: Event,
}

/// A node's heartbeat entry.
#[derive(Serialize, Deserialize)]
struct Beat {
    draining: bool,
}

/// Who this node has heard from, and since when it has been able to hear at all.
#[derive(Default)]
struct Liveness {
    /// When each node's heartbeat entry last changed, by this node's clock.
    heard: HashMap<NodeId, Instant>,
    /// Since when the watch has run without a break; `None` while it is broken.
    watching_since: Option<Instant>,
}

/// One room this node serves, by its log's subject.
struct Followed {
    room: String,
    /// The last position handed to the sink.
    last: u64,
    /// While the room is caught up from its snapshot, what the stream-wide reader saw of it,
    /// handed over once the catch-up ends.
    pending: Option<Vec<(u64, Bytes)>>,
    /// Tells a later follow of the same room from this one.
    generation: u64,
}

/// The rooms this node serves, shared by the stream-wide reader and the catch-ups.
#[derive(Default)]
struct Rooms {
    by_subject: HashMap<String, Followed>,
    generations: u64,
    /// Where every room's recent events are, as the reader saw them.
    recent: Recent,
}

type SharedRooms = Arc<Mutex<Rooms>>;

fn lock(rooms: &SharedRooms) -> std::sync::MutexGuard<'_, Rooms> {
    rooms.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Followed {
    /// Hands the event at `pos` to the sink unless one at or after it was handed already
    /// (called with the rooms locked, so each room's events are handed in order by whichever
    /// task holds them).
    fn hand(&mut self, sink: &dyn Sink, pos: u64, payload: &[u8]) {
        if pos <= self.last {
            return;
        }
        self.last = pos;
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(env) => sink.event(&self.room, None, pos, &env.o, env.e),
            // Written by a newer version: skipped, not fatal to the room.
            Err(e) => warn!(error = %e, room = %self.room, pos, "an unreadable event was skipped"),
        }
    }
}

/// The NATS backplane.
pub(crate) struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    /// Reads one room's log, for catch-ups.
    log: RoomLog,
    store: stream::Stream,
    /// Counts reconnections to NATS: readers start again on each.
    epoch: tokio::sync::watch::Sender<u64>,
    snapshots: kv::Store,
    nodes: kv::Store,
    sink: OnceLock<Weak<dyn Sink>>,
    rooms: SharedRooms,
    /// The last stream position the stream-wide reader has seen.
    read: Arc<AtomicU64>,
    liveness: Arc<Mutex<Liveness>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Says when the connection to NATS is made again.
    reconnected: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    /// Numbers this process's publications for JetStream's duplicate detection.
    published: AtomicU64,
    /// Tells this process's publications apart from another's after a restart.
    instance: String,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nats")
    }
}

/// The servers' addresses as they may be logged: without the user and password an address may
/// carry (`nats://user:password@host:4222`, several separated by commas). By hand: `url` needs
/// a scheme on every address, which async-nats does not.
fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| match one.rsplit_once('@') {
            Some((before, host)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{host}"),
                None => host.to_owned(),
            },
            None => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Nats {
    /// Appends to a stream and returns the position, sent again (with the same id, so
    /// JetStream keeps one) when the acknowledgement does not come: a NATS restart in between,
    /// say. Gives up after [`APPEND_WITHIN`] in all (a publication waiting for a NATS that is
    /// gone would otherwise wait for each attempt's own timeout in turn).
    async fn append(&self, subject: String, payload: Bytes) -> Result<u64, BackplaneError> {
        let id = format!(
            "{}-{}",
            self.instance,
            self.published.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = tokio::time::Instant::now() + APPEND_WITHIN;
        let mut last = None;
        for attempt in 1u64.. {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let sent = async {
                let ack = self
                    .js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .map_err(nats_error)?;
                ack.await.map_err(nats_error)
            };
            match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) => last = Some(e),
                Err(_) => break,
            }
            let pause = Duration::from_millis(100 * attempt.min(8));
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(last.unwrap_or_else(|| {
            BackplaneError::Nats(format!(
                "NATS did not acknowledge within {} s",
                APPEND_WITHIN.as_secs()
            ))
        }))
    }

    /// Connects to `url` (several servers separated by commas) and sets up the stream and the
    /// buckets if they are not there yet.
    pub(crate) async fn connect(url: &str) -> Result<Nats, BackplaneError> {
        let (reconnected_tx, reconnected_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name("hearth-signaling")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let reconnected = reconnected_tx.clone();
                async move {
                    info!(%event, "NATS connection");
                    if matches!(event, async_nats::Event::Connected) {
                        let _ = reconnected.send(());
                    }
                }
            })
            .connect(url)
            .await
            .map_err(nats_error)?;
        let js = jetstream::new(client.clone());
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{ROOM_PREFIX}>")],
                storage: stream::StorageType::File,
                max_age: LOG_AGE,
                duplicate_window: Duration::from_secs(120),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(nats_error)?;
        if !stream.cached_info().config.allow_direct {
            // Made by an earlier version: the same, as the operator may have changed it, with
            // direct gets allowed.
            let mut config = stream.cached_info().config.clone();
            config.allow_direct = true;
            js.update_stream(config).await.map_err(nats_error)?;
            stream = js.get_stream(STREAM).await.map_err(nats_error)?;
        }
        let store = js
            .get_or_create_stream(stream::Config {
                name: STORE_STREAM.to_owned(),
                subjects: vec![STORE_SUBJECT.to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(nats_error)?;
        let snapshots = bucket(&js, SNAPSHOTS, Duration::ZERO).await?;
        // Heartbeat entries expire when a node stops refreshing them.
        let nodes = bucket(&js, NODES, NODE_TIMEOUT * 3).await?;
        // Rooms are caught up from their snapshots, so the stream is read from its end.
        let read = stream.cached_info().state.last_sequence;
        info!(url = %without_credentials(url), "sharing rooms through NATS");
        let config = &stream.cached_info().config;
        let log = RoomLog {
            stream: stream.clone(),
            direct: config.allow_direct && config.num_replicas <= 1,
        };
        Ok(Nats {
            client,
            js,
            stream,
            log,
            store,
            epoch: tokio::sync::watch::Sender::new(0),
            snapshots,
            nodes,
            sink: OnceLock::new(),
            rooms: Arc::new(Mutex::new(Rooms {
                recent: Recent::starting_at(read + 1),
                ..Rooms::default()
            })),
            // Rooms are caught up from their snapshots, so the stream is read from its end.
            read: Arc::new(AtomicU64::new(read)),
            liveness: Arc::new(Mutex::new(Liveness::default())),
            background: Mutex::new(Vec::new()),
            reconnected: Mutex::new(Some(reconnected_rx)),
            published: AtomicU64::new(0),
            instance: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Hands every message on the core subject `subject` to `handle`, listening again after
    /// a break, until `handle` says to stop (the node is gone).
    fn listen<F, Fut>(&self, subject: &'static str, handle: F)
    where
        F: Fn(async_nats::Message) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            loop {
                match client.subscribe(subject).await {
                    Ok(mut sub) => {
                        while let Some(msg) = sub.next().await {
                            if !handle(msg).await {
                                return;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, subject, "could not listen"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Answers other nodes asking which residents' tablets this node holds.
    fn start_tablets(&self, sink: Weak<dyn Sink>) {
        let client = self.client.clone();
        self.listen(TABLETS, move |msg| {
            let (client, sink) = (client.clone(), sink.clone());
            async move {
                let Some(reply) = msg.reply else { return true };
                let Some(sink) = sink.upgrade() else {
                    return false;
                };
                match serde_json::to_vec(&sink.tablets_online()) {
                    Ok(answer) => {
                        if let Err(e) = client.publish(reply, answer.into()).await {
                            debug!(error = %e, "could not answer for tablets");
                        }
                    }
                    Err(e) => warn!(error = %e, "could not write the tablets down"),
                }
                true
            }
        });
    }

    /// Broadcasts from every node, handed to the sink.
    fn start_control(&self, sink: Weak<dyn Sink>) {
        self.listen(CONTROL, move |msg| {
            let sink = sink.clone();
            async move {
                match serde_json::from_slice::<Control>(&msg.payload) {
                    Ok(c) => match sink.upgrade() {
                        Some(sink) => sink.control(c),
                        None => return false,
                    },
                    Err(e) => warn!(error = %e, "an unreadable broadcast"),
                }
                true
            }
        });
    }

    /// After NATS comes back, everything that reads from it starts again: a server restart
    /// drops its consumers without telling them. The stream is read on from the last position
    /// read, and nobody is declared lost until the heartbeats have been watched whole
    /// again for a full timeout.
    fn start_recovery(&self, sink: Weak<dyn Sink>) {
        let Some(mut reconnected) = self
            .reconnected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let rooms = self.rooms.clone();
        let read = self.read.clone();
        let stream = self.stream.clone();
        let nodes = self.nodes.clone();
        let liveness = self.liveness.clone();
        let epoch = self.epoch.clone();
        let task = tokio::spawn(async move {
            let start = || {
                tokio::spawn(read_stream(
                    stream.clone(),
                    rooms.clone(),
                    read.clone(),
                    sink.clone(),
                ))
            };
            let mut reader = start();
            let mut watch = tokio::spawn(watch_nodes(nodes.clone(), liveness.clone()));
            // Also run after the first connection: nothing is followed yet then, and starting
            // the watch again costs nothing.
            while reconnected.recv().await.is_some() {
                watch.abort();
                liveness
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .watching_since = None;
                watch = tokio::spawn(watch_nodes(nodes.clone(), liveness.clone()));
                reader.abort();
                reader = start();
                epoch.send_modify(|e| *e += 1);
                info!(
                    rooms = lock(&rooms).by_subject.len(),
                    "NATS is back; reading the rooms' logs again"
                );
            }
            watch.abort();
            reader.abort();
        });
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}

/// Watches the heartbeat bucket: every refresh of a node's entry says it is alive.
async fn watch_nodes(nodes: kv::Store, liveness: Arc<Mutex<Liveness>>) {
    loop {
        match nodes.watch_all().await {
            Ok(mut watch) => {
                let mut started = false;
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    let mut l = liveness.lock().unwrap_or_else(PoisonError::into_inner);
                    if !started {
                        started = true;
                        l.watching_since = Some(Instant::now());
                    }
                    if entry.operation == kv::Operation::Put {
                        l.heard.insert(entry.key.as_str().into(), Instant::now());
                    } else {
                        l.heard.remove(entry.key.as_str());
                    }
                }
            }
            Err(e) => debug!(error = %e, "could not watch the nodes"),
        }
        liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watching_since = None;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads the whole stream after `read`, forever, and hands the events of the rooms this node
/// serves to the sink: one ordered consumer, made again from the last position read when it
/// breaks (NATS restarted, say).
async fn read_stream(
    stream: stream::Stream,
    rooms: SharedRooms,
    read: Arc<AtomicU64>,
    sink: Weak<dyn Sink>,
) {
    loop {
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{ROOM_PREFIX}>"),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: read.load(Ordering::Relaxed) + 1,
            },
            ..Default::default()
        };
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await.map_err(nats_error),
            Err(e) => Err(nats_error(e)),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "could not read the rooms' logs; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    debug!(error = %e, "the rooms' logs broke off; reading again");
                    break;
                }
            };
            let Ok(pos) = msg.info().map(|i| i.stream_sequence) else {
                continue;
            };
            read.fetch_max(pos, Ordering::Relaxed);
            let Some(sink) = sink.upgrade() else {
                return;
            };
            let mut rooms = lock(&rooms);
            if let Some(retired) = rooms.recent.record(msg.subject.as_str(), pos) {
                tokio::task::spawn_blocking(move || drop(retired));
            }
            let Some(followed) = rooms.by_subject.get_mut(msg.subject.as_str()) else {
                // A room another node serves.
                continue;
            };
            if let Some(pending) = &mut followed.pending {
                pending.push((pos, msg.payload.clone()));
            } else {
                followed.hand(&*sink, pos, &msg.payload);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The follow of the room with this subject made as `generation`, unless it has been unfollowed
/// (and maybe followed again) since.
fn this_follow<'a>(
    rooms: &'a mut Rooms,
    subject: &str,
    generation: u64,
) -> Option<&'a mut Followed> {
    rooms
        .by_subject
        .get_mut(subject)
        .filter(|f| f.generation == generation)
}

/// Hands the store's log after `after` to `tx` until it closes: an ordered consumer, made again
/// from the last position handed over when it breaks or NATS comes back.
async fn read_store(
    stream: stream::Stream,
    mut after: u64,
    tx: tokio::sync::mpsc::UnboundedSender<StoreEntry>,
    mut epoch: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        };
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await.map_err(nats_error),
            Err(e) => Err(nats_error(e)),
        };
        match messages {
            Ok(mut messages) => {
                epoch.borrow_and_update();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = epoch.changed() => break,
                    };
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            debug!(error = %e, "the store's log broke off; reading again");
                            break;
                        }
                        None => break,
                    };
                    let Ok(pos) = msg.info().map(|i| i.stream_sequence) else {
                        continue;
                    };
                    after = pos;
                    let op = serde_json::from_slice::<StoreOp>(&msg.payload).unwrap_or_else(|e| {
                        // Written by a newer version: skipped, not fatal to the rest. An empty
                        // batch in its place still moves this copy's position past it (else
                        // a server waiting to catch up with the log would wait for it forever).
                        warn!(error = %e, pos, "an unreadable store change was skipped");
                        StoreOp::Batch {
                            audit: Vec::new(),
                            tablets: Vec::new(),
                        }
                    });
                    if tx.send((pos, op)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => debug!(error = %e, "could not read the store's log; trying again"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads one room's events from the stream directly, for a catch-up.
#[derive(Clone)]
struct RoomLog {
    stream: stream::Stream,
    /// JetStream's direct gets, which cost NATS and the node less than the stream API's: used
    /// when the stream has one replica. With more, any replica may answer one, a lagging one
    /// too, and a catch-up must see every event acknowledged before it; the stream API's gets
    /// are answered by the leader.
    direct: bool,
}

impl RoomLog {
    /// One get, direct or through the stream API (see `direct`); of the two requests given,
    /// only that one is sent. `None` when NATS answers that there is no such message.
    async fn get(
        &self,
        direct: impl Future<Output = Result<StreamMessage, stream::DirectGetError>>,
        api: impl Future<Output = Result<StreamMessage, stream::RawMessageError>>,
    ) -> Result<Option<StreamMessage>, BackplaneError> {
        if self.direct {
            kept(direct.await, DirectGetErrorKind::NotFound)
        } else {
            kept(api.await, RawMessageErrorKind::NoMessageFound)
        }
    }

    /// The position of the last event on `subject`; 0 when there is none.
    async fn last(&self, subject: &str) -> Result<u64, BackplaneError> {
        let m = self
            .get(
                self.stream.direct_get_last_for_subject(subject),
                self.stream.get_last_raw_message_by_subject(subject),
            )
            .await?;
        Ok(m.map_or(0, |m| m.sequence))
    }

    /// The event of `subject` at position `pos`, if it is still kept. Another subject's event
    /// there is an error: the stream was made again and its positions reused (a catch-up then
    /// reads by subject).
    async fn at(&self, subject: &str, pos: u64) -> Result<Option<Bytes>, BackplaneError> {
        let m = self
            .get(
                self.stream.direct_get(pos),
                self.stream.get_raw_message(pos),
            )
            .await?;
        match m {
            Some(m) if m.subject.as_str() != subject => Err(BackplaneError::Nats(format!(
                "position {pos} holds another room's event"
            ))),
            m => Ok(m.map(|m| m.payload)),
        }
    }

    /// The first event on `subject` at or after position `from`, with its position.
    async fn next(&self, subject: &str, from: u64) -> Result<Option<(u64, Bytes)>, BackplaneError> {
        let m = self
            .get(
                self.stream.direct_get_next_for_subject(subject, Some(from)),
                self.stream.get_first_raw_message_by_subject(subject, from),
            )
            .await?;
        Ok(m.map(|m| (m.sequence, m.payload)))
    }
}

/// What a get from a stream found: `None` when NATS answers that there is no such message
/// (`missing`), an error for any other failure.
fn kept<T, K>(
    got: Result<T, async_nats::error::Error<K>>,
    missing: K,
) -> Result<Option<T>, BackplaneError>
where
    K: Clone + std::fmt::Debug + std::fmt::Display + PartialEq,
{
    match got {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == missing => Ok(None),
        Err(e) => Err(nats_error(e)),
    }
}

/// Hands a newly followed room's events after `after` to the sink, read one by one from its
/// subject up to the last one there, then what the stream-wide reader kept meanwhile. Tried
/// again while NATS cannot answer, until the room is no longer followed.
async fn catch_up(
    log: RoomLog,
    rooms: SharedRooms,
    subject: String,
    generation: u64,
    known: Option<Vec<u64>>,
    sink: Weak<dyn Sink>,
) {
    if let Some(known) = known {
        // Every event of the room the reader passed before the room was registered: read by
        // position, then what the reader kept since. Should NATS fail meanwhile, the rest is
        // read by subject below.
        let mut complete = true;
        for pos in known {
            let payload = match log.at(&subject, pos).await {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    debug!(error = %e, "could not catch a room up; reading its log instead");
                    complete = false;
                    break;
                }
            };
            if !hand_read(&rooms, &subject, generation, &sink, pos, &payload) {
                return;
            }
        }
        if complete {
            hand_pending(&rooms, &subject, generation, &sink);
            return;
        }
    }
    'attempt: loop {
        let Some(mut next) =
            this_follow(&mut lock(&rooms), &subject, generation).map(|f| f.last + 1)
        else {
            return;
        };
        // The last event is read after the room was registered, so it is at least as far on
        // as anything the stream-wide reader dropped before then.
        let target = match log.last(&subject).await {
            Ok(pos) => pos,
            Err(e) => {
                debug!(error = %e, "could not catch a room up; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while next <= target {
            let (pos, payload) = match log.next(&subject, next).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "could not catch a room up; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'attempt;
                }
            };
            if !hand_read(&rooms, &subject, generation, &sink, pos, &payload) {
                return;
            }
            next = pos + 1;
        }
        hand_pending(&rooms, &subject, generation, &sink);
        return;
    }
}

/// Hands over one event a catch-up read, unless the room has been given up since; false then
/// (or when the node is gone).
fn hand_read(
    rooms: &SharedRooms,
    subject: &str,
    generation: u64,
    sink: &Weak<dyn Sink>,
    pos: u64,
    payload: &[u8],
) -> bool {
    let Some(sink) = sink.upgrade() else {
        return false;
    };
    let mut rooms = lock(rooms);
    let Some(followed) = this_follow(&mut rooms, subject, generation) else {
        return false;
    };
    followed.hand(&*sink, pos, payload);
    true
}

/// Ends a catch-up: hands over what the stream-wide reader kept of the room meanwhile, and
/// from then on the reader hands its events over itself.
fn hand_pending(rooms: &SharedRooms, subject: &str, generation: u64, sink: &Weak<dyn Sink>) {
    let Some(sink) = sink.upgrade() else { return };
    let mut rooms = lock(rooms);
    let Some(followed) = this_follow(&mut rooms, subject, generation) else {
        return;
    };
    for (pos, payload) in followed.pending.take().unwrap_or_default() {
        followed.hand(&*sink, pos, &payload);
    }
}

#[async_trait::async_trait]
impl Backplane for Nats {
    fn attach(&self, sink: Weak<dyn Sink>) {
        if self.sink.set(sink.clone()).is_ok() {
            self.start_control(sink.clone());
            self.start_tablets(sink.clone());
            self.start_recovery(sink);
        }
    }

    fn shared(&self) -> bool {
        true
    }

    async fn publish(&self, room: &str, origin: &str, event: Event) -> Result<(), BackplaneError> {
        let payload = Bytes::from(serde_json::to_vec(&Envelope {
            o: origin.to_owned(),
            e: event,
        })?);
        self.append(format!("{ROOM_PREFIX}{}", token(room)), payload)
            .await
            .map(|_| ())
    }

    async fn snapshot(&self, room: &str) -> Result<Option<Snapshot>, BackplaneError> {
        let Some(bytes) = self.snapshots.get(token(room)).await.map_err(nats_error)? else {
            return Ok(None);
        };
        Ok(decode_snapshot(&bytes))
    }

    async fn save_snapshot(&self, room: &str, snapshot: Snapshot) -> Result<(), BackplaneError> {
        let key = token(room);
        let value = encode_snapshot(&snapshot);
        match self
            .snapshots
            .entry(key.clone())
            .await
            .map_err(nats_error)?
        {
            Some(entry) => {
                let newer = decode_snapshot(&entry.value).is_some_and(|s| s.pos >= snapshot.pos);
                if !newer {
                    // Compare-and-set: if another node saved one meanwhile, theirs stays.
                    let _ = self.snapshots.update(&key, value, entry.revision).await;
                }
            }
            None => {
                let _ = self.snapshots.create(&key, value).await;
            }
        }
        Ok(())
    }

    async fn follow(&self, room: &str, after: u64) -> Result<(), BackplaneError> {
        let Some(sink) = self.sink.get().cloned() else {
            return Ok(());
        };
        let subject = format!("{ROOM_PREFIX}{}", token(room));
        let (generation, known) = {
            let mut rooms = lock(&self.rooms);
            if rooms.by_subject.contains_key(&subject) {
                return Ok(());
            }
            rooms.generations += 1;
            let generation = rooms.generations;
            // Under the same lock as the reader: every event it has passed is known here, and
            // every later one is kept for the room as pending.
            let known = rooms.recent.after(&subject, after);
            rooms.by_subject.insert(
                subject.clone(),
                Followed {
                    room: room.to_owned(),
                    last: after,
                    pending: Some(Vec::new()),
                    generation,
                },
            );
            (generation, known)
        };
        let task = tokio::spawn(catch_up(
            self.log.clone(),
            self.rooms.clone(),
            subject,
            generation,
            known,
            sink,
        ));
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        background.retain(|t| !t.is_finished());
        background.push(task);
        Ok(())
    }

    async fn unfollow(&self, room: &str) {
        lock(&self.rooms)
            .by_subject
            .remove(&format!("{ROOM_PREFIX}{}", token(room)));
    }

    async fn broadcast(&self, msg: Control) -> Result<(), BackplaneError> {
        let payload = Bytes::from(serde_json::to_vec(&msg)?);
        self.client
            .publish(CONTROL, payload)
            .await
            .map_err(nats_error)?;
        self.client.flush().await.map_err(nats_error)
    }

    async fn heartbeat(&self, node: &str, draining: bool) -> Result<(), BackplaneError> {
        let value = Bytes::from(serde_json::to_vec(&Beat { draining })?);
        self.nodes.put(node, value).await.map_err(nats_error)?;
        Ok(())
    }

    async fn live_nodes(&self) -> Option<HashSet<NodeId>> {
        let l = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
        // Only a view that has been whole for a full timeout can tell that a node is gone.
        if l.watching_since.is_none_or(|t| t.elapsed() < NODE_TIMEOUT) {
            return None;
        }
        Some(
            l.heard
                .iter()
                .filter(|(_, t)| t.elapsed() < NODE_TIMEOUT)
                .map(|(n, _)| n.clone())
                .collect(),
        )
    }

    async fn append_store(&self, op: &StoreOp) -> Result<Option<u64>, BackplaneError> {
        let payload = Bytes::from(serde_json::to_vec(op)?);
        self.append(STORE_SUBJECT.to_owned(), payload)
            .await
            .map(Some)
    }

    async fn store_end(&self) -> Result<u64, BackplaneError> {
        Ok(self
            .store
            .get_info()
            .await
            .map_err(nats_error)?
            .state
            .last_sequence)
    }

    fn read_store(&self, after: u64, tx: tokio::sync::mpsc::UnboundedSender<StoreEntry>) {
        let task = tokio::spawn(read_store(
            self.store.clone(),
            after,
            tx,
            self.epoch.subscribe(),
        ));
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    async fn tablets_online(&self) -> Option<Vec<(String, OnlineTablet)>> {
        // Every live node answers (this one too); without a whole view of who is alive, all
        // answers within the wait count.
        let expected = self.live_nodes().await.map_or(usize::MAX, |n| n.len());
        let inbox = self.client.new_inbox();
        let mut answers = match self.client.subscribe(inbox.clone()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "could not ask the other nodes for tablets");
                return None;
            }
        };
        if let Err(e) = self
            .client
            .publish_with_reply(TABLETS, inbox, Bytes::new())
            .await
        {
            warn!(error = %e, "could not ask the other nodes for tablets");
            return None;
        }
        let mut all = Vec::new();
        let mut heard = 0;
        let deadline = tokio::time::Instant::now() + TABLETS_WAIT;
        while heard < expected {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(msg)) => {
                    heard += 1;
                    match serde_json::from_slice::<Vec<(String, OnlineTablet)>>(&msg.payload) {
                        Ok(some) => all.extend(some),
                        Err(e) => warn!(error = %e, "an unreadable answer about tablets"),
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some(all)
    }

    async fn close(&self) {
        lock(&self.rooms).by_subject.clear();
        for task in self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        // What was published reaches NATS if it is there; without NATS the flush would wait
        // for a reconnection that may never come, and the node must still stop.
        match tokio::time::timeout(CLOSE_FLUSH, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "the last messages could not be sent to NATS"),
            Err(_) => warn!("NATS is unreachable; stopping without sending the last messages"),
        }
    }
}

/// A snapshot as stored: its position, 8 bytes big-endian, then the state.
fn encode_snapshot(s: &Snapshot) -> Bytes {
    let mut v = Vec::with_capacity(8 + s.state.len());
    v.extend_from_slice(&s.pos.to_be_bytes());
    v.extend_from_slice(&s.state);
    Bytes::from(v)
}

fn decode_snapshot(bytes: &[u8]) -> Option<Snapshot> {
    let (pos, state) = bytes.split_first_chunk::<8>()?;
    Some(Snapshot {
        pos: u64::from_be_bytes(*pos),
        state: state.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn a_logged_address_carries_no_password() {
        assert_eq!(
            without_credentials("nats://hearth:s3cret@10.0.0.5:4222"),
            "nats://10.0.0.5:4222"
        );
        assert_eq!(
            without_credentials("nats://a:p@h1:4222,tls://tok@h2:4222,nats://h3:4222"),
            "nats://h1:4222,tls://h2:4222,nats://h3:4222"
        );
        assert_eq!(without_credentials("u:p@h:4222"), "h:4222");
        assert_eq!(
            without_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
