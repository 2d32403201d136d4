//! Starting server processes: learning a Hearth server's WebSocket URL from the line it prints,
//! a free port for one that takes a port, and waiting until it listens; shared by the tests and
//! the load tool.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// Spawns `cmd` (killed on drop) and reads its stderr until a `ws://` URL appears. Returns the
/// child, the URL and the rest of its stderr, which the caller must keep reading or drop.
pub async fn spawn_until_url(cmd: &mut Command) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server process starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .expect("stderr is readable")
            .expect("the server prints its URL before exiting");
        if let Some(i) = line.find("ws://") {
            let url = line[i..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            return (child, url, lines);
        }
    }
}

/// A loopback port free right now, for a process that must be told its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (up to 10 s) until something accepts connections on loopback `port`.
pub async fn until_listening(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not start listening on {port}");
}
