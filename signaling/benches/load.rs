//! Load tool for the signaling server (a benchmark, not a test). It runs the same workload
//! against Hearth and, in the same run, against the PeerJS server (npm `peer`, the most used
//! open signaling server), each pinned to the same core while this load generator runs on
//! another, and prints a table with the ratios:
//!
//! - connection storm: connects/s, each with its token check (Hearth) and first message;
//! - idle soak: server RSS per idle connection; with `--after-traffic S`, again S seconds after
//!   the saturation phase (what the server still holds for sessions that had traffic);
//! - relay at a fixed schedule (open loop): p50/p99/max latency, sender to receiver;
//! - relay at saturation (closed loop, a window of messages in flight): msgs/s and the server's
//!   CPU, so msgs per server CPU-second says what one core can carry even when this generator
//!   (one core too) is the limit;
//! - mass resume: sessions all drop and reconnect at once; time until every one is back, and
//!   every message sent to a peer that was still away delivered exactly once (Hearth also
//!   checks that the numbering has no gaps);
//! - Hearth only: the same fixed-schedule relay between two nodes sharing rooms through NATS,
//!   with both ends on one node and on different nodes, against one process on its own;
//! - with `--idle-fleet N`: N idle connections held for real by several processes on the
//!   server's core, their total RSS: PeerJS's processes and Hearth's, each on its own with a
//!   room's two ends on one process, and Hearth's as nodes sharing rooms through NATS with a
//!   room's two ends on different nodes (NATS's memory counted too). One process may not open
//!   more than the sandbox's descriptor limit (20,000 here), so the soak above measures one
//!   process and projects it, and this one holds the whole number.
//!
//! Hearth keeps its records in memory (`--store memory`) unless `--store-file` is given: then in
//! a database file, as it does by default.
//!
//! `scripts/bench-signaling` installs PeerJS and nats-server and runs it; docs/BENCHMARKS.md has
//! the command and the figures.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hearth_proto::Role;
use serde_json::{Value, json};
use signaling::secret::Secret;
use signaling::token::TokenKeys;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../tests/common/process.rs"]
mod process;

#[path = "support/floor.rs"]
mod floor;

use process::{free_port, until_listening};

const SECRET: &str = "load-test-secret-not-for-production-use-0123";
const CANDIDATE: &str = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host";

struct Args {
    connections: usize,
    rate: u64,
    seconds: u64,
    soak: u64,
    after_traffic: u64,
    window: usize,
    resume: usize,
    cross_connections: usize,
    /// Sessions resumed in the cross-node phase (`--resume`, at most its connections).
    cross_resume: usize,
    cross_rate: u64,
    peerjs: Option<PathBuf>,
    nats: String,
    server_core: String,
    client_core: String,
    realtime: bool,
    even: bool,
    /// `--store-file`: Hearth keeps its records (the audit trail of every join and leave) in a
    /// database file in this directory, as it does by default, rather than in memory.
    store_dir: Option<tempfile::TempDir>,
    /// `--pad BYTES`: every signal's data carries this many more bytes, as an offer's or an
    /// answer's SDP does (a few KB), instead of only an ICE candidate's line.
    pad: usize,
    /// `--floor`: also measure the floor relay (`support/floor.rs`), the same workload less its
    /// resumes.
    floor: bool,
    /// `--idle-fleet N`: hold N idle connections across `--idle-nodes` server processes (see
    /// [`idle_fleet`]); 0: not measured.
    idle_fleet: usize,
    idle_nodes: usize,
}

fn args() -> Args {
    let mut a = Args {
        connections: 2_000,
        rate: 2_000,
        seconds: 5,
        soak: 3,
        after_traffic: 0,
        window: 1_000,
        resume: 1_000,
        cross_connections: 1_000,
        cross_resume: 1_000,
        cross_rate: 2_000,
        peerjs: None,
        nats: "nats-server".to_owned(),
        server_core: "0".to_owned(),
        client_core: "1".to_owned(),
        realtime: false,
        even: false,
        store_dir: None,
        pad: 0,
        floor: false,
        idle_fleet: 0,
        idle_nodes: 6,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        let even = |v: String| v.parse::<usize>().expect("a number") & !1;
        match flag.as_str() {
            "--connections" => a.connections = even(value()),
            "--rate" => a.rate = value().parse().expect("a number"),
            "--seconds" => a.seconds = value().parse().expect("a number"),
            "--soak" => a.soak = value().parse().expect("a number"),
            "--after-traffic" => a.after_traffic = value().parse().expect("a number"),
            "--window" => a.window = value().parse().expect("a number"),
            "--resume" => a.resume = even(value()),
            "--cross-connections" => a.cross_connections = even(value()),
            "--cross-rate" => a.cross_rate = value().parse().expect("a number"),
            "--peerjs" => a.peerjs = Some(PathBuf::from(value())),
            "--nats-server" => a.nats = value(),
            "--server-core" => a.server_core = value(),
            "--client-core" => a.client_core = value(),
            "--realtime" => a.realtime = true,
            "--even" => a.even = true,
            "--pad" => a.pad = value().parse().expect("a number"),
            "--floor" => a.floor = true,
            "--idle-fleet" => a.idle_fleet = even(value()),
            "--idle-nodes" => a.idle_nodes = value().parse().expect("a number"),
            "--store-file" => a.store_dir = Some(tempfile::tempdir().expect("a directory")),
            // cargo bench passes --bench; ignore it and anything unknown.
            _ => {}
        }
    }
    a.cross_resume = a.resume.min(a.cross_connections);
    a.resume = a.resume.min(a.connections);
    a
}

fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // This binary is also the floor relay's process (see `spawn_floor`).
    let mut argv = std::env::args().skip_while(|a| a != FLOOR_SERVE);
    if argv.next().is_some() {
        floor::serve(
            argv.next()
                .expect("an address")
                .parse()
                .expect("an address"),
        );
    }
    // And the processes that hold an idle fleet's client ends (see `idle_fleet`).
    let mut argv = std::env::args().skip_while(|a| a != IDLE_CLIENTS);
    if argv.next().is_some() {
        let rest: Vec<String> = argv.collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(idle_clients(&rest));
        return;
    }
    let args = args();
    if args.pad > 0 {
        let _ = PAD.set(format!(r#","pad":"{}""#, "a".repeat(args.pad)));
    }
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    // This process holds the client end of every connection, the servers their own.
    assert!(
        soft >= args.connections as u64 + 64,
        "the open-file limit ({soft}) is too low for {} connections; raise `ulimit -n`",
        args.connections
    );
    // The generator on its own core (threads made from now on inherit it), the servers on
    // another: each side has one core, as the targets say.
    let pinned = std::process::Command::new("taskset")
        .args(["-cp", &args.client_core, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(pinned, "taskset (util-linux) pins the load generator");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(args));
}

async fn bench(args: Args) {
    println!(
        "load: {} connections, fixed schedule {} msg/s{} for {} s, saturation window {}, {} resumes, \
         cross-node {} connections at {} msg/s; servers on core {}{}, generator on core {}; \
         Hearth's records {}{}",
        args.connections,
        args.rate,
        if args.even {
            " evenly spaced"
        } else {
            " in 1 ms ticks"
        },
        args.seconds,
        args.window,
        args.resume,
        args.cross_connections,
        args.cross_rate,
        args.server_core,
        if args.realtime {
            " (request threads at real-time priority)"
        } else {
            ""
        },
        args.client_core,
        if args.store_dir.is_some() {
            "in a database file"
        } else {
            "in memory"
        },
        if args.pad > 0 {
            format!("; signals padded by {} bytes", args.pad)
        } else {
            String::new()
        }
    );
    if args.connections == 0 {
        // Only the rooms shared through NATS, and the idle fleet.
        if let Some(c) = cross_node(&args).await {
            c.print(&args);
        }
        idle_fleets(&args).await;
        return;
    }
    let hearth = one_server(&args, Server::Hearth).await;
    let peerjs = match &args.peerjs {
        Some(_) => Some(one_server(&args, Server::PeerJs).await),
        None => {
            println!("(no --peerjs: PeerJS not measured)");
            None
        }
    };
    let floor = if args.floor {
        Some(one_server(&args, Server::Floor).await)
    } else {
        None
    };
    let cross = cross_node(&args).await;

    println!(
        "\n| server | connections | connects/s | server CPU in storm | idle RSS/conn | p50 @{r} | p99 @{r} | max @{r} | saturation msgs/s | server CPU | msgs per CPU-s | the same, generator awake | {n} resumes | resume gaps |",
        r = args.rate,
        n = args.resume
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    hearth.row();
    if let Some(p) = &peerjs {
        p.row();
    }
    if let Some(f) = &floor {
        f.row();
    }
    if let Some(p) = &peerjs {
        // Three decimals: a ratio just under a target (1.9996x, say) must not print as it.
        println!("\nHow many times better Hearth is than PeerJS (higher is better):");
        println!(
            "| connects/s | idle RSS/conn | p50 | p99 | msgs per CPU-s | the same, generator awake | resume time |"
        );
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {:.3}x | {:.3}x | {:.3}x | {:.3}x | {:.3}x | {:.3}x | {:.3}x |",
            hearth.connects_per_s / p.connects_per_s,
            p.idle_rss_per_conn / hearth.idle_rss_per_conn,
            p.fixed.p50_us / hearth.fixed.p50_us,
            p.fixed.p99_us / hearth.fixed.p99_us,
            hearth.msgs_per_cpu_s / p.msgs_per_cpu_s,
            hearth.msgs_per_cpu_s_awake / p.msgs_per_cpu_s_awake,
            p.resume.secs / hearth.resume.secs,
        );
    }
    println!(
        "\n100k idle connections, projected from the soak (this sandbox allows {} descriptors per process): Hearth {:.0} MiB{}",
        rlimit::Resource::NOFILE.get().unwrap().1,
        (hearth.base_rss + 100_000.0 * hearth.idle_rss_per_conn) / 1048576.0,
        peerjs
            .as_ref()
            .map(|p| format!(
                ", PeerJS {:.0} MiB",
                (p.base_rss + 100_000.0 * p.idle_rss_per_conn) / 1048576.0
            ))
            .unwrap_or_default()
    );
    if let Some(h) = hearth.after_traffic_rss_per_conn {
        let peer = peerjs
            .as_ref()
            .and_then(|p| p.after_traffic_rss_per_conn)
            .map(|p| format!(", PeerJS {:.1} KiB ({:.3}x)", p / 1024.0, p / h))
            .unwrap_or_default();
        println!(
            "\nRSS per connection {} s after the saturation phase (all still connected, idle): Hearth {:.1} KiB{peer}",
            args.after_traffic,
            h / 1024.0
        );
    }
    if let Some(o) = &hearth.own {
        println!(
            "\nHearth's own relay time at {} msg/s (read to written, from its /metrics histogram; {} signals): p50 at most {} ms, p99 at most {} ms, slowest at most {} ms. The rest of the end-to-end figures is the kernel's loopback and this generator.",
            args.rate,
            o.count,
            o.p50_s * 1000.0,
            o.p99_s * 1000.0,
            o.max_s * 1000.0
        );
    }
    if let Some(f) = &floor {
        println!(
            "\nThe floor (a relay that only reads each frame and writes it on; its CPU per message is almost all the kernel's): {:.0} msgs per CPU-s, {:.0} msgs/s at {:.0}% of the core; Hearth {:.0}% of it per CPU-s{}. With the generator kept awake: the floor {:.0} msgs per CPU-s; Hearth {:.0}% of it{}",
            f.msgs_per_cpu_s,
            f.saturation_msgs_per_s,
            f.server_cores * 100.0,
            hearth.msgs_per_cpu_s / f.msgs_per_cpu_s * 100.0,
            peerjs
                .as_ref()
                .map(|p| format!(
                    ", PeerJS {:.0}%",
                    p.msgs_per_cpu_s / f.msgs_per_cpu_s * 100.0
                ))
                .unwrap_or_default(),
            f.msgs_per_cpu_s_awake,
            hearth.msgs_per_cpu_s_awake / f.msgs_per_cpu_s_awake * 100.0,
            peerjs
                .as_ref()
                .map(|p| format!(
                    ", PeerJS {:.0}% (the floor {:.3}x PeerJS)",
                    p.msgs_per_cpu_s_awake / f.msgs_per_cpu_s_awake * 100.0,
                    f.msgs_per_cpu_s_awake / p.msgs_per_cpu_s_awake
                ))
                .unwrap_or_default()
        );
    }
    if let Some(c) = cross {
        c.print(&args);
    }
    idle_fleets(&args).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Hearth,
    PeerJs,
}

/// A server measured: Hearth, PeerJS, or the floor (`support/floor.rs`), which speaks PeerJS's
/// protocol.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Hearth,
    PeerJs,
    Floor,
}

impl Server {
    fn proto(self) -> Proto {
        match self {
            Server::Hearth => Proto::Hearth,
            Server::PeerJs | Server::Floor => Proto::PeerJs,
        }
    }
}

/// Latency of one fixed-schedule run as the receivers saw it.
#[derive(Default)]
struct Latency {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    lost: u64,
}

impl Latency {
    fn cell(&self) -> String {
        format!(
            "{:.0} msg/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms{}",
            self.msgs_per_s,
            self.p50_us / 1000.0,
            self.p99_us / 1000.0,
            self.max_us / 1000.0,
            lost(self.lost)
        )
    }
}

fn lost(n: u64) -> String {
    if n > 0 {
        format!(" (LOST {n})")
    } else {
        String::new()
    }
}

#[derive(Default)]
struct Resumed {
    secs: f64,
    /// Sessions that reconnected, and of those the ones that came back as themselves.
    of: usize,
    back: usize,
    missing: u64,
    doubled: u64,
    seq_gaps: u64,
    new_ids: usize,
}

impl Resumed {
    /// Two table cells: how many came back in what time, and what went wrong.
    fn cells(&self) -> String {
        format!(
            "{}/{} back in {:.2} s | {} missing, {} doubled, {} seq gaps, {} new ids",
            self.back, self.of, self.secs, self.missing, self.doubled, self.seq_gaps, self.new_ids
        )
    }
}

struct Report {
    name: &'static str,
    held: usize,
    connects_per_s: f64,
    /// The server's CPU during the storm, in cores.
    storm_cores: f64,
    base_rss: f64,
    idle_rss_per_conn: f64,
    /// The same, `--after-traffic` seconds after the saturation phase.
    after_traffic_rss_per_conn: Option<f64>,
    fixed: Latency,
    saturation_msgs_per_s: f64,
    server_cores: f64,
    msgs_per_cpu_s: f64,
    /// The same with the generator kept awake ([`Fleet::saturate`]).
    msgs_per_cpu_s_awake: f64,
    resume: Resumed,
    errors: u64,
    /// Hearth: its own relay time (read to written) in the fixed schedule, from its histogram.
    own: Option<OwnLatency>,
}

/// One saturation phase: how long it lasted, the messages that arrived, the servers' CPU
/// seconds (in user space and in the kernel) and this generator's.
struct Saturation {
    secs: f64,
    got: u64,
    user: f64,
    system: f64,
    generator: f64,
}

impl Saturation {
    fn cpu(&self) -> f64 {
        self.user + self.system
    }

    fn msgs_per_s(&self) -> f64 {
        self.got as f64 / self.secs
    }

    fn msgs_per_cpu_s(&self) -> f64 {
        self.got as f64 / self.cpu()
    }

    /// Both ends do the same per message (one read and one write), so the generator, on one
    /// core too, can be what limits the phase rather than the server. The server's time per
    /// message, in user space and in the kernel: a change of the server's own code moves the
    /// first; the second is the sockets' work (both ends of each, on loopback) and, unless the
    /// generator is kept awake, waking it.
    fn log(&self, name: &str, how: &str) {
        let msgs = self.got.max(1) as f64;
        eprintln!(
            "{name}: saturation{how} took {:.0}% of the server's core and {:.0}% of the \
             generator's; the server's time per message: {:.2} µs in user space, {:.2} µs in \
             the kernel",
            self.cpu() / self.secs * 100.0,
            self.generator / self.secs * 100.0,
            self.user / msgs * 1e6,
            self.system / msgs * 1e6
        );
    }
}

/// Upper bounds of the buckets holding the server's median, 99th percentile and slowest relay.
struct OwnLatency {
    p50_s: f64,
    p99_s: f64,
    max_s: f64,
    count: u64,
}

/// Reads Hearth's `hearth_relay_latency_seconds` histogram from its `/metrics`: the time each
/// signal spent in the server, from read to written. Only the bucket bounds are known, so each
/// figure is "at most".
async fn own_latency(url: &str) -> Option<OwnLatency> {
    use tokio::io::AsyncReadExt;
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()?
        .to_owned();
    let mut s = TcpStream::connect(&host).await.ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    let buckets: Vec<(f64, u64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("hearth_relay_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            Some((le.parse().unwrap_or(f64::INFINITY), n.trim().parse().ok()?))
        })
        .collect();
    let count = buckets.last()?.1;
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n as f64 >= q * count as f64)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    Some(OwnLatency {
        p50_s: at(0.5),
        p99_s: at(0.99),
        max_s: at(1.0),
        count,
    })
}

impl Report {
    fn row(&self) {
        let r = &self.resume;
        println!(
            "| {}{} | {} | {:.0} | {:.0}% | {:.1} KiB | {:.3} ms | {:.3} ms | {:.3} ms{} | {:.0} | {:.0}% | {:.0} | {:.0} | {} |",
            self.name,
            if self.errors > 0 {
                format!(" ({} ERRORS from the server)", self.errors)
            } else {
                String::new()
            },
            self.held,
            self.connects_per_s,
            self.storm_cores * 100.0,
            self.idle_rss_per_conn / 1024.0,
            self.fixed.p50_us / 1000.0,
            self.fixed.p99_us / 1000.0,
            self.fixed.max_us / 1000.0,
            lost(self.fixed.lost),
            self.saturation_msgs_per_s,
            self.server_cores * 100.0,
            self.msgs_per_cpu_s,
            self.msgs_per_cpu_s_awake,
            r.cells()
        );
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

/// CPU time (user + system) of the processes so far, in seconds.
fn cpu_secs(pids: &[u32]) -> f64 {
    let (user, system) = cpu_parts(pids);
    user + system
}

/// CPU time of the processes so far in user space and in the kernel, in seconds.
fn cpu_parts(pids: &[u32]) -> (f64, f64) {
    // Clock ticks are 100 per second on Linux (USER_HZ).
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let tick = |i: usize| f[i].parse::<f64>().unwrap() / 100.0;
            (tick(11), tick(12))
        })
        .fold((0.0, 0.0), |(u, s), (du, ds)| (u + du, s + ds))
}

fn pinned(core: &str, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core, program]).kill_on_drop(true);
    c
}

/// A Hearth server process on the server core; `nats` shares its rooms.
async fn spawn_hearth(args: &Args, nats: Option<(&str, &str)>) -> (Child, String) {
    let mut c = pinned(&args.server_core, env!("CARGO_BIN_EXE_hearth-signaling"));
    let store = match &args.store_dir {
        Some(dir) => {
            static SERVERS: AtomicUsize = AtomicUsize::new(0);
            let n = SERVERS.fetch_add(1, Relaxed);
            dir.path()
                .join(format!("hearth-{n}.redb"))
                .to_string_lossy()
                .into_owned()
        }
        None => "memory".to_owned(),
    };
    c.args(["serve", "--listen", "127.0.0.1:0", "--store", &store])
        .env("HEARTH_SECRET", SECRET)
        // Its default level, which its systemd unit and container set too.
        .env("RUST_LOG", "info")
        .stdout(Stdio::null());
    if let Some((url, node)) = nats {
        c.args(["--nats-url", url, "--node-id", node]);
    }
    let (child, url, mut lines) = process::spawn_until_url(&mut c).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    if args.realtime {
        // Every thread, as tokio names its workers and its blocking pool alike: the blocking
        // pool (store writes) competes with the workers as an equal, as it does without.
        // Threads made later inherit the priority.
        realtime(child.id().unwrap(), &["-f", "-p", "10"], |_| true);
    }
    (child, url)
}

/// The PeerJS server as its CLI runs it, on the server core. Its limits are raised so they do
/// not end the run (5000 clients at most, 60 s without a heartbeat); its behaviour is as shipped.
async fn spawn_peerjs(args: &Args, script: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let child = pinned(&args.server_core, "node")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--concurrent_limit",
            "1000000",
            "--alive_timeout",
            "3600000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs PeerJS");
    until_listening(port, "PeerJS").await;
    if args.realtime {
        // Node's event loop is its main thread; its GC and thread-pool helpers keep the
        // normal scheduler and run while the loop waits, and so do threads it makes later
        // (`-R`: reset on fork). With every thread real-time, PeerJS's p99 was worse (51 ms
        // against 13 ms; docs/BENCHMARKS.md).
        let pid = child.id().unwrap();
        realtime(pid, &["-R", "-f", "-p", "10"], |tid| tid == pid);
    }
    (child, format!("ws://127.0.0.1:{port}/peerjs"))
}

/// The floor's process: this binary again, on the server's core.
const FLOOR_SERVE: &str = "--floor-serve";

async fn spawn_floor(args: &Args) -> (Child, String) {
    let port = free_port();
    let me = std::env::current_exe().expect("this binary");
    let child = pinned(&args.server_core, &me.to_string_lossy())
        .args([FLOOR_SERVE, &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("the floor relay starts");
    until_listening(port, "the floor relay").await;
    if args.realtime {
        realtime(child.id().unwrap(), &["-f", "-p", "10"], |_| true);
    }
    (child, format!("ws://127.0.0.1:{port}/peerjs"))
}

/// `--realtime`: the server's threads that serve requests get a real-time priority (`chrt -f
/// 10`, util-linux), so no other process can take their core while they have work. The reason
/// is this sandbox's own agent (pid 1, nice -10): a `sched_switch` trace of a fixed-schedule
/// run at 19,000 connections showed it taking the server's core 15 times in 8 s, for up to
/// 33 ms at a time, and the messages that arrive meanwhile wait (docs/BENCHMARKS.md). The
/// kernel still leaves other processes 5% of every second (`sched_rt_runtime_us`).
fn realtime(pid: u32, policy: &[&str], wanted: impl Fn(u32) -> bool) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    for task in tasks {
        let tid: u32 = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        if wanted(tid) {
            chrt(tid, policy);
        }
    }
}

/// Sets one thread's scheduling policy with util-linux's `chrt`.
fn chrt(tid: u32, policy: &[&str]) {
    let done = std::process::Command::new("chrt")
        .args(policy)
        .arg(tid.to_string())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        done,
        "chrt {policy:?} {tid} (util-linux) sets the thread's priority"
    );
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Stream = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// Small per-connection buffers, as the Hearth server uses.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
}

const FIXED: usize = 0;
const SATURATE: usize = 1;
const RESUME: usize = 2;

/// What every reader adds to.
struct Stats {
    epoch: Instant,
    phase: AtomicUsize,
    hist: [Mutex<Histogram<u64>>; 3],
    received: [AtomicU64; 3],
    errors: AtomicU64,
    window: Semaphore,
}

/// One client connection's numbering as it saw it.
#[derive(Default)]
struct ConnState {
    last_seq: AtomicU64,
    seq_gaps: AtomicU64,
    resume_got: AtomicU64,
}

/// The number after `key` in `text`, without parsing the JSON: the generator shares its core
/// with thousands of readers, so it does as little as it can.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    let digits = &text[i..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn read(mut stream: Stream, st: Arc<ConnState>, stats: Arc<Stats>) {
    while let Some(Ok(m)) = stream.next().await {
        let Message::Text(t) = m else { continue };
        let now = u64::try_from(stats.epoch.elapsed().as_nanos()).unwrap();
        if t.contains(r#""type":"error""#) || t.contains(r#""type":"ERROR""#) {
            stats.errors.fetch_add(1, Relaxed);
        }
        if let Some(seq) = number_after(&t, "\"seq\":") {
            let last = st.last_seq.swap(seq, Relaxed);
            if seq != last + 1 {
                st.seq_gaps.fetch_add(1, Relaxed);
            }
        }
        if let Some(sent) = number_after(&t, "\"t\":") {
            let phase = stats.phase.load(Relaxed);
            stats.hist[phase]
                .lock()
                .unwrap()
                .record((now.saturating_sub(sent) / 1000).max(1))
                .unwrap();
            stats.received[phase].fetch_add(1, Relaxed);
            match phase {
                SATURATE => stats.window.add_permits(1),
                RESUME => {
                    st.resume_got.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }
}

/// The clients of one run: connection `2p` and `2p + 1` are a pair in one room.
struct Fleet {
    proto: Proto,
    tag: &'static str,
    stats: Arc<Stats>,
    sinks: Vec<Option<Sink>>,
    readers: Vec<Option<JoinHandle<()>>>,
    states: Vec<Arc<ConnState>>,
    ids: Vec<String>,
    secrets: Vec<String>,
    tokens: Vec<String>,
    urls: Vec<String>,
}

impl Drop for Fleet {
    /// Closes every connection now (a reader holds its socket's other half), not when the
    /// server does: the next phase's fleet needs the descriptors.
    fn drop(&mut self) {
        for r in self.readers.iter().flatten() {
            r.abort();
        }
    }
}

/// What a connection learnt from its first message.
struct Opened {
    id: String,
    secret: String,
    resumed: bool,
}

fn room(tag: &str, i: usize) -> String {
    format!("bench-{tag}-{}", i / 2)
}

fn tokens(proto: Proto, clients: std::ops::Range<usize>, tag: &str) -> Vec<String> {
    let keys = TokenKeys::new(&Secret::new(SECRET).unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    clients
        .map(|i| match proto {
            Proto::Hearth => {
                let role = if i % 2 == 0 {
                    Role::Resident
                } else {
                    Role::Family
                };
                keys.mint(
                    &room(tag, i),
                    role,
                    &format!("n{i}"),
                    None,
                    Duration::from_secs(3600),
                    now,
                )
                .unwrap()
            }
            Proto::PeerJs => format!("tok{i}"),
        })
        .collect()
}

/// Connects client `i` and waits for its first message (`welcome`/`resumed`, or `OPEN`).
async fn open(
    proto: Proto,
    url: &str,
    i: usize,
    token: &str,
    tag: &str,
    resume: Option<(&str, &str, u64)>,
) -> (WebSocketStream<MaybeTlsStream<TcpStream>>, Opened) {
    let url = match proto {
        Proto::Hearth => url.to_owned(),
        Proto::PeerJs => format!("{url}?key=peerjs&id=p{i}&token={token}"),
    };
    // Clients come from 32 loopback addresses: with tens of thousands of connections from one
    // address to one port, the kernel's search for a free source port in connect() took most
    // of the generator's core (at 19,000, 90% of it against 31% of the server's), and the storm
    // measured the generator. Binding a source address first gives each its own ports.
    let authority = url
        .split("//")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a ws:// URL");
    let server: std::net::SocketAddr = authority.parse().expect("an IP address and port");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 32) as u8);
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .expect("a loopback source address");
    let stream = socket.connect(server).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        url.as_str(),
        MaybeTlsStream::Plain(stream),
        Some(small_buffers()),
    )
    .await
    .expect("WebSocket handshake");
    if proto == Proto::Hearth {
        let mut hello = json!({"type":"hello","token":token,"room":room(tag, i)});
        if let Some((peer, secret, last_seq)) = resume {
            hello["resume"] = json!({"peer":peer,"secret":secret,"last_seq":last_seq});
        }
        ws.send(Message::text(hello.to_string())).await.unwrap();
    }
    loop {
        let Message::Text(t) = ws.next().await.unwrap().unwrap() else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let opened = match (proto, v["type"].as_str()) {
            (Proto::Hearth, Some("welcome")) => Opened {
                id: s("peer"),
                secret: s("resume_secret"),
                resumed: false,
            },
            (Proto::Hearth, Some("resumed")) => Opened {
                id: s("peer"),
                secret: String::new(),
                resumed: true,
            },
            (Proto::PeerJs, Some("OPEN")) => Opened {
                id: format!("p{i}"),
                secret: String::new(),
                resumed: resume.is_some(),
            },
            _ => panic!("unexpected first message: {v}"),
        };
        return (ws, opened);
    }
}

/// `--pad`'s field (none without it), the same for both servers.
static PAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn signal(proto: Proto, to: &str, t: u64, k: u64) -> Message {
    let pad = PAD.get().map_or("", String::as_str);
    Message::text(match proto {
        Proto::Hearth => format!(
            r#"{{"type":"signal","to":"{to}","data":{{"t":{t},"k":{k},"candidate":"{CANDIDATE}"{pad}}}}}"#
        ),
        Proto::PeerJs => format!(
            r#"{{"type":"CANDIDATE","dst":"{to}","payload":{{"t":{t},"k":{k},"candidate":"{CANDIDATE}"{pad}}}}}"#
        ),
    })
}

impl Fleet {
    /// The connection storm: `n` clients, client `i` on `urls[node(i)]`, 256 opening at once.
    /// Returns the fleet and the seconds it took.
    async fn connect(
        proto: Proto,
        tag: &'static str,
        urls: &[String],
        n: usize,
        node: impl Fn(usize) -> usize,
        window: usize,
    ) -> (Fleet, f64) {
        let stats = Arc::new(Stats {
            epoch: Instant::now(),
            phase: AtomicUsize::new(FIXED),
            hist: std::array::from_fn(|_| {
                Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
            }),
            received: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            window: Semaphore::new(window),
        });
        let tokens = tokens(proto, 0..n, tag);
        let urls: Vec<String> = (0..n).map(|i| urls[node(i)].clone()).collect();
        let started = Instant::now();
        let sem = Arc::new(Semaphore::new(256));
        let joins: Vec<_> = (0..n)
            .map(|i| {
                let (url, token, sem) = (urls[i].clone(), tokens[i].clone(), sem.clone());
                tokio::spawn(async move {
                    let _permit = sem.acquire().await.unwrap();
                    open(proto, &url, i, &token, tag, None).await
                })
            })
            .collect();
        let mut fleet = Fleet {
            proto,
            tag,
            stats,
            sinks: Vec::with_capacity(n),
            readers: Vec::with_capacity(n),
            states: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            secrets: Vec::with_capacity(n),
            tokens,
            urls,
        };
        for j in joins {
            let (ws, opened) = j.await.unwrap();
            let (sink, stream) = ws.split();
            let st = Arc::new(ConnState::default());
            // The welcome was seq 1.
            st.last_seq
                .store(u64::from(proto == Proto::Hearth), Relaxed);
            fleet.readers.push(Some(tokio::spawn(read(
                stream,
                st.clone(),
                fleet.stats.clone(),
            ))));
            fleet.sinks.push(Some(sink));
            fleet.states.push(st);
            fleet.ids.push(opened.id);
            fleet.secrets.push(opened.secret);
        }
        let secs = started.elapsed().as_secs_f64();
        (fleet, secs)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.stats.epoch.elapsed().as_nanos()).unwrap()
    }

    /// Message `k` goes round robin over the pairs, alternating direction.
    async fn send_kth(&mut self, k: u64) {
        let pairs = self.sinks.len() / 2;
        let pair = usize::try_from(k).unwrap() % pairs;
        let forward = (k / pairs as u64).is_multiple_of(2);
        let (from, to) = if forward {
            (2 * pair, 2 * pair + 1)
        } else {
            (2 * pair + 1, 2 * pair)
        };
        let msg = signal(self.proto, &self.ids[to], self.now_ns(), k);
        self.sinks[from].as_mut().unwrap().send(msg).await.unwrap();
    }

    async fn wait_for(&self, phase: usize, total: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while self.stats.received[phase].load(Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stats.received[phase].load(Relaxed)
    }

    /// Open loop: `rate` messages per second for `seconds`, senders never wait for replies.
    /// `realtime`: this generator's thread, which both sends and receives, has a real-time
    /// priority for the phase (see [`realtime`]): with the servers protected, the sandbox's
    /// agent took this core instead, for up to 24 ms. The phase needs a third of the core
    /// (`--even`: over 90%, docs/BENCHMARKS.md; the kernel keeps 5% for others), so others
    /// still have room; the saturation phase, which needs all of it, runs as usual.
    async fn fixed(&mut self, rate: u64, seconds: u64, realtime: bool, even: bool) -> Latency {
        // The runtime has one thread, this process's main one: its id is the process's.
        let me = std::process::id();
        if realtime {
            chrt(me, &["-f", "-p", "10"]);
        }
        self.stats.phase.store(FIXED, Relaxed);
        let start = Instant::now();
        let total = rate * seconds;
        if even {
            self.fixed_even(rate, total, realtime).await;
        } else {
            self.fixed_ticks(rate, total).await;
        }
        let latency = self.latency(total, start).await;
        if realtime {
            chrt(me, &["-o", "-p", "0"]);
        }
        latency
    }

    /// The schedule as the timer gives it: `rate / 1000` messages at once every millisecond.
    /// This thread also receives, and between two sends it lets the readers run. Before it did,
    /// a reply waited in its socket until the burst it came in was all sent, which added the
    /// generator's own sending time to every figure, for both servers alike (about 0.07-0.08
    /// ms to each p50 at 20,000 a second; docs/BENCHMARKS.md).
    async fn fixed_ticks(&mut self, rate: u64, total: u64) {
        let per_tick = (rate / 1000).max(1);
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * per_tick / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut k = 0;
        while k < total {
            tick.tick().await;
            for _ in 0..per_tick {
                self.send_kth(k).await;
                k += 1;
                // Replies that came meanwhile are read now: a task that yields runs again only
                // after the runtime has checked its sockets (tokio's current-thread scheduler
                // polls its I/O driver first), so a reply's time is taken when it comes, not
                // once the whole burst is sent.
                tokio::task::yield_now().await;
            }
        }
    }

    /// `--even`: one message every `1 / rate` seconds, evenly spaced. Tokio's timer counts
    /// whole milliseconds, so a thread of its own keeps the time (the kernel's sleep is good to
    /// tens of microseconds) and tells this one when each message is due; between them this
    /// thread waits in the runtime, free to read what arrives. With `realtime` the clock
    /// thread's priority is above this one's (the same would not interrupt it).
    async fn fixed_even(&mut self, rate: u64, total: u64, realtime: bool) {
        let gap = Duration::from_secs(1) / u32::try_from(rate).expect("a rate below 4 billion");
        let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let clock = std::thread::spawn(move || {
            if realtime {
                // "<pid>/task/<tid>": this thread's id, which std does not give.
                let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
                let tid = me.file_name().unwrap().to_string_lossy().parse().unwrap();
                chrt(tid, &["-f", "-p", "11"]);
            }
            for k in 0..total {
                let due = start + gap * u32::try_from(k).expect("under 4 billion messages");
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if due_tx.send(k).is_err() {
                    return;
                }
            }
        });
        while let Some(k) = due_rx.recv().await {
            self.send_kth(k).await;
        }
        clock.join().unwrap();
    }

    /// Waits for the fixed schedule's `total` messages, sent from `start`, and reads their
    /// latency histogram.
    async fn latency(&self, total: u64, start: Instant) -> Latency {
        let secs = start.elapsed().as_secs_f64();
        let got = self.wait_for(FIXED, total, Duration::from_secs(10)).await;
        let h = self.stats.hist[FIXED].lock().unwrap().clone();
        Latency {
            msgs_per_s: got as f64 / secs,
            p50_us: h.value_at_quantile(0.5) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            max_us: h.max() as f64,
            lost: total - got,
        }
    }

    /// Closed loop: a message goes out whenever one of the window has arrived.
    ///
    /// `awake`: the generator's thread never sleeps meanwhile (a task that always yields keeps
    /// it polling its sockets). On loopback a server's write runs the receiving side's TCP work
    /// too, and wakes the generator's thread when it sleeps waiting for messages; over a network
    /// the client's machine would. A generator with time to spare sleeps more, so a slower server
    /// pays for more wakeups per message unless it is kept awake. Its share of its core then reads
    /// about 100% whether or not it limits the phase.
    async fn saturate(&mut self, seconds: u64, pids: &[u32], awake: bool) -> Saturation {
        self.stats.phase.store(SATURATE, Relaxed);
        let spinner = awake.then(|| {
            tokio::spawn(async {
                loop {
                    tokio::task::yield_now().await;
                }
            })
        });
        let got0 = self.stats.received[SATURATE].load(Relaxed);
        let (user0, system0) = cpu_parts(pids);
        let own0 = cpu_secs(&[std::process::id()]);
        let start = Instant::now();
        let mut k = 0;
        let end = start + Duration::from_secs(seconds);
        while Instant::now() < end {
            // A window that does not come back (messages refused, say) ends the phase.
            let Ok(permit) = tokio::time::timeout_at(end.into(), self.stats.window.acquire()).await
            else {
                break;
            };
            permit.unwrap().forget();
            self.send_kth(k).await;
            k += 1;
        }
        let got = self.stats.received[SATURATE].load(Relaxed) - got0;
        let secs = start.elapsed().as_secs_f64();
        let (user, system) = cpu_parts(pids);
        let generator = cpu_secs(&[std::process::id()]) - own0;
        if let Some(s) = spinner {
            s.abort();
        }
        self.wait_for(SATURATE, got0 + k, Duration::from_secs(10))
            .await;
        Saturation {
            secs,
            got,
            user: user - user0,
            system: system - system0,
            generator,
        }
    }

    /// The first `n` clients drop at once and reconnect at once, each resuming its session
    /// (PeerJS: the same id and token again) and sending its partner one message as soon as it
    /// is back, while the partner may still be away.
    async fn mass_resume(&mut self, n: usize) -> Resumed {
        for i in 0..n {
            if let Some(r) = self.readers[i].take() {
                r.abort();
            }
            drop(self.sinks[i].take());
        }
        // The server notices the closes before the reconnects arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stats.phase.store(RESUME, Relaxed);
        for st in &self.states[..n] {
            st.seq_gaps.store(0, Relaxed);
        }
        let started = Instant::now();
        let sem = Arc::new(Semaphore::new(256));
        let joins: Vec<_> = (0..n)
            .map(|i| {
                let (proto, tag) = (self.proto, self.tag);
                let (url, token, sem) = (self.urls[i].clone(), self.tokens[i].clone(), sem.clone());
                let (peer, secret, partner) = (
                    self.ids[i].clone(),
                    self.secrets[i].clone(),
                    self.ids[i ^ 1].clone(),
                );
                let st = self.states[i].clone();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    let _permit = sem.acquire().await.unwrap();
                    let last = st.last_seq.load(Relaxed);
                    let (ws, opened) =
                        open(proto, &url, i, &token, tag, Some((&peer, &secret, last))).await;
                    let (mut sink, stream) = ws.split();
                    let reader = tokio::spawn(read(stream, st, stats.clone()));
                    let t = u64::try_from(stats.epoch.elapsed().as_nanos()).unwrap();
                    sink.send(signal(proto, &partner, t, i as u64))
                        .await
                        .unwrap();
                    (sink, reader, opened, Instant::now())
                })
            })
            .collect();
        let mut new_ids = 0;
        let mut last_back = started;
        for (i, j) in joins.into_iter().enumerate() {
            let (sink, reader, opened, at) = j.await.unwrap();
            if !opened.resumed || opened.id != self.ids[i] {
                new_ids += 1;
            }
            last_back = last_back.max(at);
            self.sinks[i] = Some(sink);
            self.readers[i] = Some(reader);
        }
        let secs = (last_back - started).as_secs_f64();
        self.wait_for(RESUME, n as u64, Duration::from_secs(10))
            .await;
        // Let doubles, if any, arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut r = Resumed {
            secs,
            of: n,
            back: n - new_ids,
            new_ids,
            ..Resumed::default()
        };
        for st in &self.states[..n] {
            match st.resume_got.load(Relaxed) {
                0 => r.missing += 1,
                1 => {}
                more => r.doubled += more - 1,
            }
            if self.proto == Proto::Hearth {
                r.seq_gaps += st.seq_gaps.load(Relaxed);
            }
        }
        r
    }
}

/// Every phase against one server process.
async fn one_server(args: &Args, server: Server) -> Report {
    let proto = server.proto();
    let (child, url, name) = match server {
        Server::Hearth => {
            let (c, u) = spawn_hearth(args, None).await;
            (c, u, "hearth-signaling")
        }
        Server::PeerJs => {
            let (c, u) = spawn_peerjs(args, args.peerjs.as_deref().unwrap()).await;
            (c, u, "PeerJS 1.0.2")
        }
        Server::Floor => {
            let (c, u) = spawn_floor(args).await;
            (c, u, "floor relay")
        }
    };
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_rss = rss_bytes(pid);
    eprintln!("{name}: connection storm");
    let cpu_before = cpu_secs(&[pid]);
    let own_before = cpu_secs(&[std::process::id()]);
    let (mut fleet, storm) = Fleet::connect(
        proto,
        "one",
        std::slice::from_ref(&url),
        args.connections,
        |_| 0,
        args.window,
    )
    .await;
    let storm_cores = (cpu_secs(&[pid]) - cpu_before) / storm;
    eprintln!(
        "{name}: storm took {:.0}% of the server's core and {:.0}% of the generator's",
        storm_cores * 100.0,
        (cpu_secs(&[std::process::id()]) - own_before) / storm * 100.0
    );
    let held = fleet.sinks.len();
    tokio::time::sleep(Duration::from_secs(args.soak)).await;
    let idle_rss_per_conn = (rss_bytes(pid) - base_rss) / held as f64;
    eprintln!("{name}: fixed schedule");
    let (server_before, own_before) = (cpu_secs(&[pid]), cpu_secs(&[std::process::id()]));
    let fixed = fleet
        .fixed(args.rate, args.seconds, args.realtime, args.even)
        .await;
    // Nothing was relayed before this phase: the histogram holds just its messages.
    let own = match proto {
        Proto::Hearth => own_latency(&url).await,
        Proto::PeerJs => None,
    };
    let secs = args.seconds as f64;
    eprintln!(
        "{name}: the fixed schedule took {:.0}% of the server's core and {:.0}% of the generator's",
        (cpu_secs(&[pid]) - server_before) / secs * 100.0,
        (cpu_secs(&[std::process::id()]) - own_before) / secs * 100.0
    );
    eprintln!("{name}: saturation");
    // Once with the generator free to sleep, once kept awake (see `Fleet::saturate`).
    let asleep = fleet.saturate(args.seconds, &[pid], false).await;
    asleep.log(name, "");
    let awake = fleet.saturate(args.seconds, &[pid], true).await;
    awake.log(name, " with the generator kept awake");
    // The floor holds nothing for a session and resumes none: only its relay is of interest.
    let after_traffic_rss_per_conn = if args.after_traffic > 0 && server != Server::Floor {
        eprintln!("{name}: idle after the traffic");
        tokio::time::sleep(Duration::from_secs(args.after_traffic)).await;
        Some((rss_bytes(pid) - base_rss) / held as f64)
    } else {
        None
    };
    eprintln!("{name}: mass resume");
    let resume = fleet
        .mass_resume(if server == Server::Floor {
            0
        } else {
            args.resume
        })
        .await;
    let errors = fleet.stats.errors.load(Relaxed);
    drop(fleet);
    drop(child);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Report {
        name,
        held,
        connects_per_s: held as f64 / storm,
        storm_cores,
        base_rss,
        idle_rss_per_conn,
        after_traffic_rss_per_conn,
        fixed,
        saturation_msgs_per_s: asleep.msgs_per_s(),
        server_cores: asleep.cpu() / asleep.secs,
        msgs_per_cpu_s: asleep.msgs_per_cpu_s(),
        msgs_per_cpu_s_awake: awake.msgs_per_cpu_s(),
        resume,
        errors,
        own,
    }
}

struct Cross {
    alone: Latency,
    same_node: Latency,
    cross_node: Latency,
    /// CPU seconds during the cross-node schedule: the two nodes serving its rooms, a third
    /// serving none of them, and nats-server.
    cross_cpu: (f64, f64, f64),
    /// Mass resume in one process, to itself, and the CPU it took.
    alone_resume: (Resumed, f64),
    /// Mass resume of the cross-node fleet onto a third node that followed none of its rooms,
    /// and the CPU of the nodes and of NATS meanwhile.
    moved: (Resumed, f64, f64),
}

impl Cross {
    fn print(&self, args: &Args) {
        println!(
            "\nRooms shared through NATS ({} connections, {} msg/s for {} s; nats-server and the nodes on core {}):",
            args.cross_connections, args.cross_rate, args.seconds, args.server_core
        );
        println!("| layout | relay |");
        println!("|---|---|");
        println!("| one process, no NATS | {} |", self.alone.cell());
        println!(
            "| two nodes on NATS, both ends on one node | {} |",
            self.same_node.cell()
        );
        println!(
            "| two nodes on NATS, ends on different nodes | {} |",
            self.cross_node.cell()
        );
        println!(
            "\ncross-node p50 overhead: {:.3} ms over one process, {:.3} ms over the same node",
            (self.cross_node.p50_us - self.alone.p50_us) / 1000.0,
            (self.cross_node.p50_us - self.same_node.p50_us) / 1000.0
        );
        let (served, idle, nats) = self.cross_cpu;
        let relayed = (args.cross_rate * args.seconds - self.cross_node.lost) as f64;
        let per = |cpu: f64| cpu / relayed * 1e6;
        println!(
            "\nCPU per relayed message, ends on different nodes: the two nodes serving the rooms {:.1} µs, a third node serving none of them {:.1} µs, nats-server {:.1} µs",
            per(served),
            per(idle),
            per(nats)
        );
        let (alone, alone_cpu) = &self.alone_resume;
        let (moved, nodes_cpu, nats_cpu) = &self.moved;
        if moved.of == 0 {
            return;
        }
        println!(
            "\nMass resume: {} sessions drop at once and reconnect at once, each sending one message when back:",
            moved.of
        );
        println!("| where they resume | back | gaps | CPU meanwhile | CPU per resume |");
        println!("|---|---|---|---|---|");
        println!(
            "| one process, to itself | {} | {alone_cpu:.2} s | {:.0} µs |",
            alone.cells(),
            alone_cpu / alone.of as f64 * 1e6
        );
        println!(
            "| nodes on NATS, to a third node that followed none of their rooms | {} | {:.2} s (nodes {nodes_cpu:.2} s, nats-server {nats_cpu:.2} s) | {:.0} µs |",
            moved.cells(),
            nodes_cpu + nats_cpu,
            (nodes_cpu + nats_cpu) / moved.of as f64 * 1e6
        );
    }
}

/// The fixed schedule through two nodes sharing rooms through NATS, against one process.
async fn cross_node(args: &Args) -> Option<Cross> {
    if args.cross_connections == 0 {
        return None;
    }
    let n = args.cross_connections;
    let m = args.cross_resume;
    eprintln!("one process, for the cross-node comparison");
    let (alone, alone_resume) = {
        let (child, url) = spawn_hearth(args, None).await;
        let (mut f, _) =
            Fleet::connect(Proto::Hearth, "alone", &[url], n, |_| 0, args.window).await;
        let l = f
            .fixed(args.cross_rate, args.seconds, args.realtime, args.even)
            .await;
        eprintln!("one process: mass resume");
        let pid = [child.id().unwrap()];
        let before = cpu_secs(&pid);
        let r = f.mass_resume(m).await;
        let cpu = cpu_secs(&pid) - before;
        drop(f);
        drop(child);
        (l, (r, cpu))
    };
    let ((nats, _dir), nats_url) = spawn_nats(args).await;
    let (a, url_a) = spawn_hearth(args, Some((&nats_url, "bench-a"))).await;
    let (b, url_b) = spawn_hearth(args, Some((&nats_url, "bench-b"))).await;
    let (c, url_c) = spawn_hearth(args, Some((&nats_url, "bench-c"))).await;
    // Each node sees the others alive before rooms are shared.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let urls = [url_a, url_b];
    eprintln!("two nodes, both ends on one");
    let same_node = {
        let (mut f, _) = Fleet::connect(Proto::Hearth, "same", &urls, n, |_| 0, args.window).await;
        f.fixed(args.cross_rate, args.seconds, args.realtime, args.even)
            .await
    };
    eprintln!("two nodes, ends on different ones");
    let (nodes, nats_pid) = (
        [a.id().unwrap(), b.id().unwrap(), c.id().unwrap()],
        [nats.id().unwrap()],
    );
    // The two nodes serving the rooms, the third (serving none of them until the mass
    // resume), and nats-server.
    let cpu = || {
        (
            cpu_secs(&nodes[..2]),
            cpu_secs(&nodes[2..]),
            cpu_secs(&nats_pid),
        )
    };
    let (cross_node, cross_cpu, moved) = {
        let (mut f, _) =
            Fleet::connect(Proto::Hearth, "cross", &urls, n, |i| i % 2, args.window).await;
        let before = cpu();
        let l = f
            .fixed(args.cross_rate, args.seconds, args.realtime, args.even)
            .await;
        let after = cpu();
        let cross_cpu = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        // What a node's loss or drain asks of the node its clients reach next: a resume for
        // each session, and a follow (snapshot, then the log) for each room.
        eprintln!("nodes on NATS: mass resume onto a third node");
        for url in &mut f.urls[..m] {
            url.clone_from(&url_c);
        }
        let before = cpu();
        let r = f.mass_resume(m).await;
        let after = cpu();
        let cpu = (after.0 + after.1 - before.0 - before.1, after.2 - before.2);
        (l, cross_cpu, (r, cpu.0, cpu.1))
    };
    Some(Cross {
        alone,
        same_node,
        cross_node,
        cross_cpu,
        alone_resume,
        moved,
    })
}

/// nats-server with JetStream on the server core, storing in a directory of its own (deleted
/// when the server goes); its URL.
async fn spawn_nats(args: &Args) -> ((Child, tempfile::TempDir), String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = pinned(&args.server_core, &args.nats)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    until_listening(port, "nats-server").await;
    ((child, dir), format!("nats://127.0.0.1:{port}"))
}

/// The argument that makes this binary a process holding client ends of an idle fleet.
const IDLE_CLIENTS: &str = "--idle-clients";

/// What one server's idle fleet held, and the memory it took.
struct IdleFleet {
    name: &'static str,
    processes: usize,
    held: usize,
    connect_secs: f64,
    /// RSS of the server processes (and NATS) before the fleet connected, and with it held.
    base_rss: f64,
    rss: f64,
    /// NATS's part of `base_rss` and `rss` (Hearth's nodes share rooms through it).
    nats_rss: Option<(f64, f64)>,
}

impl IdleFleet {
    fn row(&self) {
        println!(
            "| {} | {} | {} | {:.1} s | {:.0} MiB | {} | {:.2} KiB{} |",
            self.name,
            self.processes,
            self.held,
            self.connect_secs,
            self.rss / 1048576.0,
            self.nats_rss
                .map(|(_, r)| format!("{:.0} MiB", r / 1048576.0))
                .unwrap_or_else(|| "-".to_owned()),
            (self.rss - self.base_rss) / self.held as f64 / 1024.0,
            self.nats_rss
                .map(|(base, r)| format!(
                    " ({:.2} KiB of it NATS's)",
                    (r - base) / self.held as f64 / 1024.0
                ))
                .unwrap_or_default()
        );
    }
}

/// `--idle-fleet N`, for Hearth and (with `--peerjs`) PeerJS, and the table.
async fn idle_fleets(args: &Args) {
    if args.idle_fleet == 0 {
        return;
    }
    let alone = idle_fleet(args, Server::Hearth, false).await;
    let shared = idle_fleet(args, Server::Hearth, true).await;
    let peerjs = match args.peerjs {
        Some(_) => Some(idle_fleet(args, Server::PeerJs, false).await),
        None => None,
    };
    println!(
        "\n{} idle connections held for real by {} server processes on core {} (one process may open at most {} descriptors here); RSS of every server process, NATS's included, {} s after the last connected:",
        args.idle_fleet,
        args.idle_nodes,
        args.server_core,
        rlimit::Resource::NOFILE.get().unwrap().1,
        args.soak
    );
    println!(
        "| server | processes | connections held | connect time | RSS in all | of it NATS | per connection |"
    );
    println!("|---|---|---|---|---|---|---|");
    alone.row();
    shared.row();
    if let Some(p) = &peerjs {
        p.row();
        // In all, each layout's processes count with their own base; per connection, not.
        let per = |f: &IdleFleet| (f.rss - f.base_rss) / f.held as f64;
        println!(
            "\nPeerJS's RSS over Hearth's, in all: {:.3}x with processes on their own, {:.3}x with Hearth's sharing rooms through NATS; per connection: {:.3}x and {:.3}x",
            p.rss / alone.rss,
            p.rss / shared.rss,
            per(p) / per(&alone),
            per(p) / per(&shared)
        );
    }
}

/// `args.idle_fleet` clients connect to `args.idle_nodes` server processes on the server core,
/// and stay connected and idle, answering heartbeats. The client ends are held by processes of
/// this binary on the client core, each within the descriptor limit.
///
/// `shared` (Hearth): the processes are nodes sharing their rooms through nats-server, whose
/// memory is counted with theirs, and client `i` goes to node `i % nodes` (round robin, as a
/// load balancer without stickiness places them: a room's two ends are on two consecutive
/// nodes). Otherwise each process is on its own, as PeerJS's can only be, and a room's two
/// ends go to the same one.
async fn idle_fleet(args: &Args, server: Server, shared: bool) -> IdleFleet {
    let (n, nodes) = (args.idle_fleet, args.idle_nodes.max(1));
    let (name, proto) = match (server, shared) {
        (Server::Hearth, true) => ("hearth-signaling, nodes on NATS", "hearth"),
        (Server::Hearth, false) => ("hearth-signaling, processes on their own", "hearth"),
        (Server::PeerJs, _) => ("PeerJS 1.0.2", "peerjs"),
        (Server::Floor, _) => unreachable!("the floor holds no sessions"),
    };
    let nats = if shared {
        Some(spawn_nats(args).await)
    } else {
        None
    };
    let mut servers = Vec::with_capacity(nodes);
    let mut urls = Vec::with_capacity(nodes);
    for node in 0..nodes {
        let (child, url) = match server {
            Server::PeerJs => spawn_peerjs(args, args.peerjs.as_deref().unwrap()).await,
            _ => {
                let node_id = format!("idle-{node}");
                let on = nats
                    .as_ref()
                    .map(|(_, url)| (url.as_str(), node_id.as_str()));
                spawn_hearth(args, on).await
            }
        };
        servers.push(child);
        urls.push(url);
    }
    if shared {
        // Each node sees the others alive before rooms are shared.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let nats = nats.map(|(nats, _)| nats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nats_pid = nats.as_ref().map(|(child, _)| child.id().unwrap());
    let pids: Vec<u32> = servers
        .iter()
        .map(|c| c.id().unwrap())
        .chain(nats_pid)
        .collect();
    let rss = || pids.iter().map(|&pid| rss_bytes(pid)).sum::<f64>();
    let base_rss = rss();
    let nats_base = nats_pid.map(rss_bytes);
    // As few client processes as the descriptor limit allows, sharing the clients evenly.
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    let most = usize::try_from(soft).unwrap().saturating_sub(64).max(2);
    // The servers have the same limit: more per server would wait at its backlog for ever.
    assert!(
        n.div_ceil(nodes) <= most,
        "{n} connections over {nodes} processes is more than {most} for one; use more --idle-nodes"
    );
    let processes = n.div_ceil(most);
    let per = n.div_ceil(processes).next_multiple_of(2);
    eprintln!(
        "{name}: {n} idle connections to {nodes} processes, from {processes} client processes"
    );
    let me = std::env::current_exe().expect("this binary");
    let node_pids = &pids[..nodes];
    let cpu_before = (cpu_secs(node_pids), nats_pid.map(|p| cpu_secs(&[p])));
    let started = Instant::now();
    let mut clients = Vec::with_capacity(processes);
    for start in (0..n).step_by(per) {
        let count = per.min(n - start);
        let mut child = pinned(&args.client_core, &me.to_string_lossy())
            .args([
                IDLE_CLIENTS,
                proto,
                if shared { "spread" } else { "pairs" },
                &start.to_string(),
                &count.to_string(),
            ])
            .args(&urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a client process starts");
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        clients.push((child, stdin, lines));
    }
    for (_, _, lines) in &mut clients {
        let line = lines.next_line().await.unwrap();
        assert_eq!(
            line.as_deref(),
            Some("ready"),
            "a client process connected its clients"
        );
    }
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{name}: connected in {connect_secs:.1} s; CPU meanwhile: the server processes {:.1} s{}",
        cpu_secs(node_pids) - cpu_before.0,
        nats_pid
            .zip(cpu_before.1)
            .map(|(p, before)| format!(", nats-server {:.1} s", cpu_secs(&[p]) - before))
            .unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(args.soak)).await;
    // Still connected, every one: each client process counts its own.
    let mut held = 0;
    for (_, stdin, lines) in &mut clients {
        stdin.write_all(b"count\n").await.unwrap();
        let line = lines.next_line().await.unwrap().unwrap();
        held += line.parse::<usize>().expect("a count");
    }
    let rss = rss();
    let nats_rss = nats_pid
        .zip(nats_base)
        .map(|(pid, base)| (base, rss_bytes(pid)));
    // Every socket closed, and the kernel given time to tear them down, before the next
    // layout connects.
    for (mut child, _, _) in clients {
        let _ = child.kill().await;
    }
    for mut server in servers {
        let _ = server.kill().await;
    }
    if let Some((mut nats, _dir)) = nats {
        let _ = nats.kill().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "{name}: {held} of {n} held, {:.0} MiB in all",
        rss / 1048576.0
    );
    IdleFleet {
        name,
        processes: nodes,
        held,
        connect_secs,
        base_rss,
        rss,
        nats_rss,
    }
}

/// A process holding client ends of an idle fleet: `--idle-clients <hearth|peerjs>
/// <spread|pairs> <first> <count> <url>...`. It connects clients `first..first + count`,
/// client `i` to URL `i % urls` (`spread`) or `(i / 2) % urls` (`pairs`: a room's two ends to
/// one), prints `ready`, and then keeps them open, reading (which answers the servers' pings),
/// and answers each `count` line on its stdin with how many are still open.
async fn idle_clients(argv: &[String]) {
    let proto = match argv[0].as_str() {
        "hearth" => Proto::Hearth,
        "peerjs" => Proto::PeerJs,
        other => panic!("not a protocol: {other}"),
    };
    let spread = match argv[1].as_str() {
        "spread" => true,
        "pairs" => false,
        other => panic!("not a placement: {other}"),
    };
    let number = |k: usize| argv[k].parse::<usize>().expect("a number");
    let (first, count) = (number(2), number(3));
    let urls = &argv[4..];
    let open_now = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(256));
    let joins: Vec<_> = tokens(proto, first..first + count, "idle")
        .into_iter()
        .zip(first..)
        .map(|(token, i)| {
            let node = (if spread { i } else { i / 2 }) % urls.len();
            let (url, sem, open_now) = (urls[node].clone(), sem.clone(), open_now.clone());
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await.unwrap();
                let (mut ws, _) = open(proto, &url, i, &token, "idle", None).await;
                drop(permit);
                open_now.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    while let Some(Ok(_)) = ws.next().await {}
                    open_now.fetch_sub(1, Relaxed);
                });
            })
        })
        .collect();
    for j in joins {
        j.await.unwrap();
    }
    println!("ready");
    // Until the parent closes its stdin (or kills this process).
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lines() {
            if line.is_err() {
                break;
            }
            println!("{}", open_now.load(Relaxed));
        }
    })
    .await
    .unwrap();
}
