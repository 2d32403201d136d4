//! Load tool for the signaling server (not a test): opens N connections in pairs, holds them idle,
//! then relays `signal`s at a fixed schedule, and reports connections held, connects/s, msgs/s,
//! p50/p99 relay latency and server RSS per connection.
//!
//! It runs the same workload against a peer in the same run: a bare relay over the same
//! WebSocket library that does only what relaying needs (no token check, limits, metrics or
//! waiting room), so the ratio says what Hearth's features cost on this machine today.
//!
//! `cargo bench -p signaling --bench load -- --connections 20000 --rate 20000 --seconds 10`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hearth_proto::Role;
use serde_json::{Value, json};
use signaling::secret::Secret;
use signaling::token::TokenKeys;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../tests/common/process.rs"]
mod process;

const SECRET: &str = "load-test-secret-not-for-production-use-0123";

struct Args {
    connections: usize,
    rate: u64,
    seconds: u64,
    soak: u64,
    peer_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        connections: 2_000,
        rate: 2_000,
        seconds: 5,
        soak: 3,
        peer_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match flag.as_str() {
            "--connections" => a.connections = usize::try_from(num()).unwrap() & !1,
            "--rate" => a.rate = num(),
            "--seconds" => a.seconds = num(),
            "--soak" => a.soak = num(),
            "--serve-peer" => a.peer_only = true,
            // cargo bench passes --bench; ignore it and anything unknown.
            _ => {}
        }
    }
    a
}

fn main() {
    // Both ends of 20k connections live on this machine: raise the hard limit too when allowed
    // (root), else the soft limit up to the hard one. The server process inherits it.
    if rlimit::Resource::NOFILE.set(262_144, 262_144).is_err() {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
    }
    let args = args();
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    // The client sockets live in this process and the server's in its own, so each needs a
    // little more than N descriptors.
    assert!(
        soft >= args.connections as u64 + 64,
        "the open-file limit ({soft}) is too low for {} connections; raise `ulimit -n`",
        args.connections
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.peer_only {
        rt.block_on(peer_relay());
        return;
    }
    rt.block_on(async {
        println!(
            "load: {} connections ({} pairs), relay {} msg/s for {} s, idle soak {} s",
            args.connections,
            args.connections / 2,
            args.rate,
            args.seconds,
            args.soak
        );
        let hearth = run(&args, Target::Hearth).await;
        let peer = run(&args, Target::Peer).await;
        println!("\n| server | connections held | connects/s | idle RSS/conn | msgs/s | p50 | p99 | max | RSS/conn under load |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for r in [&hearth, &peer] {
            r.row();
        }
        println!(
            "\nratio hearth/peer: idle RSS per connection {:.2}, p99 {:.2}, connects/s {:.2}",
            hearth.idle_rss_per_conn / peer.idle_rss_per_conn,
            hearth.p99_us / peer.p99_us,
            hearth.connects_per_s / peer.connects_per_s
        );
    });
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Hearth,
    Peer,
}

struct Report {
    name: &'static str,
    held: usize,
    connects_per_s: f64,
    idle_rss_per_conn: f64,
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    load_rss_per_conn: f64,
    lost: u64,
    server_side: Option<(f64, f64)>,
}

impl Report {
    fn row(&self) {
        println!(
            "| {} | {} | {:.0} | {:.1} KiB | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {:.1} KiB |{}",
            self.name,
            self.held,
            self.connects_per_s,
            self.idle_rss_per_conn / 1024.0,
            self.msgs_per_s,
            self.p50_us / 1000.0,
            self.p99_us / 1000.0,
            self.max_us / 1000.0,
            self.load_rss_per_conn / 1024.0,
            if self.lost > 0 {
                format!(" LOST {}", self.lost)
            } else {
                String::new()
            }
        );
        if let Some((p50, p99)) = self.server_side {
            println!(
                "|  | server-side relay (read to written): p50 <= {p50} ms, p99 <= {p99} ms | | | | | | | |"
            );
        }
    }
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024.0
}

/// Starts the server process and returns it with its WebSocket URL.
async fn spawn(target: Target) -> (tokio::process::Child, String) {
    let mut cmd = match target {
        Target::Hearth => {
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-signaling"));
            c.args(["serve", "--listen", "127.0.0.1:0", "--store", "memory"])
                .env("HEARTH_SECRET", SECRET)
                .env("RUST_LOG", "warn");
            c
        }
        Target::Peer => {
            let mut c = tokio::process::Command::new(std::env::current_exe().unwrap());
            c.arg("--serve-peer");
            c
        }
    };
    let (child, url, mut lines) = process::spawn_until_url(cmd.stdout(Stdio::null())).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// The same per-connection buffer sizes the Hearth server uses, so the comparison is about work
/// done per message, not buffer defaults.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

async fn run(args: &Args, target: Target) -> Report {
    let name = if target == Target::Hearth {
        "hearth-signaling"
    } else {
        "peer: bare relay"
    };
    let (child, url) = spawn(target).await;
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_bytes(pid);
    let keys = TokenKeys::new(&Secret::new(SECRET).unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tokens: Vec<String> = (0..args.connections)
        .map(|i| {
            let role = if i % 2 == 0 {
                Role::Resident
            } else {
                Role::Family
            };
            keys.mint(
                &format!("bench-{}", i / 2),
                role,
                &format!("n{i}"),
                None,
                Duration::from_secs(3600),
                now,
            )
            .unwrap()
        })
        .collect();

    // Connection storm: every connect includes the token check and the welcome.
    let epoch = Instant::now();
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut joins = Vec::with_capacity(args.connections);
    for (i, token) in tokens.into_iter().enumerate() {
        let url = url.clone();
        let sem = sem.clone();
        let room = format!("bench-{}", i / 2);
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(&url, Some(small_buffers()), false)
                    .await
                    .expect("connect");
            ws.send(Message::text(
                json!({"type":"hello","token":token,"room":room}).to_string(),
            ))
            .await
            .unwrap();
            loop {
                if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "welcome", "{v}");
                    break (ws, v["peer"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    let mut sinks: Vec<Sink> = Vec::with_capacity(args.connections);
    let mut ids = Vec::with_capacity(args.connections);
    for j in joins {
        let (ws, id) = j.await.unwrap();
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        ids.push(id);
        let hist = hist.clone();
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    // Clock first, then a plain scan for the send time: the load generator
                    // shares the 2 cores with the server, so it does as little as it can.
                    let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
                    if let Some(i) = t.find("\"t\":") {
                        let digits = &t[i + 4..];
                        let end = digits
                            .find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(digits.len());
                        let sent: u64 = digits[..end].parse().unwrap();
                        hist.lock()
                            .unwrap()
                            .record((now.saturating_sub(sent) / 1000).max(1))
                            .unwrap();
                        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let storm = started.elapsed().as_secs_f64();
    let held = sinks.len();
    tokio::time::sleep(Duration::from_secs(args.soak)).await;
    let idle_rss_per_conn = (rss_bytes(pid) - base_rss) / held as f64;

    // Relay at a fixed schedule: every millisecond, rate/1000 messages, round robin over pairs,
    // alternating direction. Senders never wait for replies (open loop).
    let total = args.rate * args.seconds;
    let per_tick = (args.rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * per_tick / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let relay_start = Instant::now();
    let pairs = held / 2;
    let mut k: u64 = 0;
    while k < total {
        tick.tick().await;
        for _ in 0..per_tick {
            let pair = usize::try_from(k).unwrap() % pairs;
            let forward = (k / pairs as u64).is_multiple_of(2);
            let (from, to) = if forward {
                (2 * pair, 2 * pair + 1)
            } else {
                (2 * pair + 1, 2 * pair)
            };
            let t = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
            let msg = json!({"type":"signal","to": ids[to],"data":{"t": t,"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"}});
            sinks[from]
                .send(Message::text(msg.to_string()))
                .await
                .unwrap();
            k += 1;
        }
    }
    let send_secs = relay_start.elapsed().as_secs_f64();
    let load_rss_per_conn = (rss_bytes(pid) - base_rss) / held as f64;
    // Wait for stragglers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(std::sync::atomic::Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    let h = hist.lock().unwrap().clone();
    let server_side = if target == Target::Hearth {
        server_quantiles(&url).await
    } else {
        None
    };
    drop(sinks);
    drop(child);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Report {
        name,
        held,
        connects_per_s: held as f64 / storm,
        idle_rss_per_conn,
        msgs_per_s: got as f64 / send_secs,
        p50_us: h.value_at_quantile(0.5) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
        max_us: h.max() as f64,
        load_rss_per_conn,
        lost: total - got,
        server_side,
    }
}

/// The server's own relay-latency histogram (read to written): bucket upper bounds holding the
/// 50th and 99th percentiles, in ms.
async fn server_quantiles(ws_url: &str) -> Option<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ws_url.strip_prefix("ws://")?.split('/').next()?.to_owned();
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    let buckets: Vec<(f64, f64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("hearth_relay_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map(|(le, _)| le * 1000.0)
    };
    Some((at(0.5)?, at(0.99)?))
}

/// The peer: the least a relay must do with the same wire messages. Reads `hello` for the room,
/// answers `welcome`, and forwards `signal`s by id. No token check, limits, metrics or lobby.
async fn peer_relay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    eprintln!("peer relay at ws://{addr}/v1/ws");
    let peers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>> = Arc::default();
    let mut next = 0u64;
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        next += 1;
        let id = format!("b{next}");
        let peers = peers.clone();
        tokio::spawn(async move {
            let Ok(ws) =
                tokio_tungstenite::accept_async_with_config(tcp, Some(small_buffers())).await
            else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(Message::Text(t))) = stream.next().await {
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                match v["type"].as_str() {
                    Some("hello") => {
                        peers.lock().unwrap().insert(id.clone(), tx.clone());
                        let _ = tx.send(Message::text(
                            json!({"type":"welcome","peer": id}).to_string(),
                        ));
                    }
                    Some("signal") => {
                        let out = json!({"type":"signal","from": id,"data": v["data"]}).to_string();
                        if let Some(to) = v["to"]
                            .as_str()
                            .and_then(|to| peers.lock().unwrap().get(to).cloned())
                        {
                            let _ = to.send(Message::text(out));
                        }
                    }
                    _ => {}
                }
            }
            peers.lock().unwrap().remove(&id);
        });
    }
}
