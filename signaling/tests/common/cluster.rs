//! A cluster on loopback for tests: Debian's `nats-server` (JetStream on disk), three
//! `hearth-signaling` processes sharing rooms through it, and `nginx` balancing over them with
//! no stickiness. NATS and nginx run from the example files in `packaging/server/`, with this
//! test's ports and directories put in.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hearth_proto::Role;
use signaling::secret::Secret;
use signaling::token::TokenKeys;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::common::process::{free_port, spawn_until_url, until_listening};

const BIN: &str = env!("CARGO_BIN_EXE_hearth-signaling");
const SECRET: &str = "cluster-test-secret-0123456789abcdef";
const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/server");

/// One node: its process and address.
pub struct Node {
    pub child: Child,
    pub addr: String,
}

impl Node {
    /// Its own WebSocket URL (bypassing nginx).
    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }
}

/// One cluster at a time: each is five processes, and this machine has two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Cluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub nats: Option<Child>,
    nats_port: u16,
    pub nodes: Vec<Node>,
    pub nginx: Child,
    lb_port: u16,
    keys: TokenKeys,
}

fn need(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is not installed: the cluster tests run Debian's nats-server and nginx (./scripts/test installs them)"
    );
}

/// Copies a process's stderr into a log file in the test directory (for a failing test's
/// reader).
fn log_to(mut child: Child, path: PathBuf) -> Child {
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(err).lines();
            let mut out = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                out.push_str(&line);
                out.push('\n');
                let _ = std::fs::write(&path, &out);
            }
        });
    }
    child
}

impl Cluster {
    /// NATS, `n` nodes and nginx, all listening; sessions resumable for 30 s.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "30s").await
    }

    /// [`Cluster::start`] with another resume grace (`humantime`, e.g. "2s").
    pub async fn start_with(n: usize, grace: &str) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nats_port = free_port();
        let nats = Self::start_nats(dir.path(), nats_port).await;
        let mut nodes = Vec::new();
        for i in 1..=n {
            nodes.push(Self::start_node(dir.path(), nats_port, i, grace).await);
        }
        let lb_port = free_port();
        let nginx = Self::start_nginx(dir.path(), lb_port, &nodes).await;
        Cluster {
            _turn: turn,
            dir,
            nats: Some(nats),
            nats_port,
            nodes,
            nginx,
            lb_port,
            keys: TokenKeys::new(&Secret::new(SECRET).expect("a usable secret")),
        }
    }

    async fn start_nats(dir: &Path, port: u16) -> Child {
        let template = std::fs::read_to_string(format!("{PACKAGING}/nats-server.conf"))
            .expect("packaging/server/nats-server.conf");
        let store = dir.join("jetstream");
        let conf = template
            .replace(
                "listen: 127.0.0.1:4222",
                &format!("listen: 127.0.0.1:{port}"),
            )
            .replace("/var/lib/hearth-nats", &store.display().to_string());
        assert_ne!(
            conf, template,
            "the example config has the lines this test replaces"
        );
        let path = dir.join("nats-server.conf");
        std::fs::write(&path, conf).expect("config written");
        let child = Command::new(need("nats-server"))
            .arg("-c")
            .arg(&path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        let child = log_to(child, dir.join("nats.log"));
        until_listening(port, "nats-server").await;
        child
    }

    async fn start_node(dir: &Path, nats_port: u16, i: usize, grace: &str) -> Node {
        let (child, url, lines) = spawn_until_url(
            Command::new(BIN)
                .env("HEARTH_SECRET", SECRET)
                .env("RUST_LOG", "info,async_nats=warn")
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--store",
                    "memory",
                    "--resume-grace",
                    grace,
                    "--drain-timeout",
                    "5s",
                    "--node-id",
                    &format!("n{i}"),
                    "--nats-url",
                    &format!("nats://127.0.0.1:{nats_port}"),
                ]),
        )
        .await;
        let log = Self::node_log_path(dir, i - 1);
        tokio::spawn(async move {
            let mut lines = lines;
            let mut out = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                out.push_str(&line);
                out.push('\n');
                let _ = std::fs::write(&log, &out);
            }
        });
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/v1/ws")
            .to_owned();
        Node { child, addr }
    }

    async fn start_nginx(dir: &Path, port: u16, nodes: &[Node]) -> Child {
        let template = std::fs::read_to_string(format!("{PACKAGING}/nginx.conf"))
            .expect("packaging/server/nginx.conf");
        let mut conf = template.replace(
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{port};"),
        );
        for (i, node) in nodes.iter().enumerate() {
            conf = conf.replace(&format!("127.0.0.1:780{}", i + 1), &node.addr);
        }
        assert!(
            !conf.contains(":8080") && !conf.contains(":7801"),
            "ports replaced"
        );
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dirs");
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, conf).expect("config written");
        let child = Command::new(need("nginx"))
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&path)
            // One process, so dropping the child stops all of nginx.
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let child = log_to(child, dir.join("nginx.log"));
        until_listening(port, "nginx").await;
        child
    }

    /// Starts one more node (not behind nginx), as an operator adding a server would.
    pub async fn add_node(&mut self) -> usize {
        let i = self.nodes.len() + 1;
        let node = Self::start_node(self.dir.path(), self.nats_port, i, "30s").await;
        self.nodes.push(node);
        i - 1
    }

    /// A node's HTTP base URL (bypassing nginx).
    pub fn http(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// The NATS URL the nodes use.
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }

    /// The load balancer's WebSocket URL.
    pub fn lb(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.lb_port)
    }

    /// A token whose subject follows from the name.
    pub fn token(&self, room: &str, role: Role, name: &str) -> String {
        crate::common::mint(&self.keys, room, role, name)
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i].child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Sends SIGTERM to node `i` (0-based) and waits for it to exit.
    pub async fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        self.signal(i, "TERM");
        tokio::time::timeout(Duration::from_secs(20), self.nodes[i].child.wait())
            .await
            .expect("the node exits after draining")
            .expect("exit status")
    }

    /// Kills node `i` (0-based) with SIGKILL.
    pub async fn kill(&mut self, i: usize) {
        self.signal(i, "KILL");
        let _ = self.nodes[i].child.wait().await;
    }

    /// Stops NATS (SIGTERM).
    pub async fn stop_nats(&mut self) {
        if let Some(mut nats) = self.nats.take() {
            let pid = nats.id().expect("running").to_string();
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
            let _ = tokio::time::timeout(Duration::from_secs(10), nats.wait()).await;
        }
    }

    /// Stops NATS (SIGTERM) and starts it again on the same port and store.
    pub async fn restart_nats(&mut self, down_for: Duration) {
        self.stop_nats().await;
        tokio::time::sleep(down_for).await;
        self.nats = Some(Self::start_nats(self.dir.path(), self.nats_port).await);
    }

    /// Where node `i` (0-based) writes its log.
    fn node_log_path(dir: &Path, i: usize) -> PathBuf {
        dir.join(format!("node{}.log", i + 1))
    }

    /// Node `i`'s (0-based) log so far.
    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(Self::node_log_path(self.dir.path(), i)).unwrap_or_default()
    }

    /// The logs of every process, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "nats.log",
            "node1.log",
            "node2.log",
            "node3.log",
            "nginx.log",
        ] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(name)) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {name} (last lines)\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}
