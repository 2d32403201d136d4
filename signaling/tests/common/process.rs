//! Starting a server process and learning its WebSocket URL from the line it prints; shared by
//! the binary tests and the load tool.

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
