//! The `hearth-signaling` binary itself: secrets from env or the dev data dir, `mint`, `serve`, and
//! a clean exit on SIGTERM that tells connected clients first.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_hearth-signaling");
const SECRET: &str = "binary-test-secret-0123456789abcdef";

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mint(
    env_secret: Option<&str>,
    data_dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("HEARTH_SECRET")
        .env_remove("HEARTH_DEV")
        .env("HEARTH_DATA_DIR", data_dir);
    if let Some(s) = env_secret {
        cmd.env("HEARTH_SECRET", s);
    }
    cmd.args(extra).args([
        "mint", "--room", "demo", "--role", "family", "--name", "Ann",
    ]);
    cmd.output().unwrap()
}

#[test]
fn without_a_secret_it_refuses_unless_dev() {
    let dir = temp_dir();
    let out = mint(None, &dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HEARTH_SECRET is not set"), "{err}");
    let out = mint(Some("short"), &dir, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
    // Dev mode generates once, says so, and reuses it: two tokens verify with the same secret.
    let first = mint(None, &dir, &["--dev"]);
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stderr).contains("generated a new secret"));
    let second = mint(None, &dir, &["--dev"]);
    assert!(String::from_utf8_lossy(&second.stderr).contains("using the secret"));
    let secret = std::fs::read_to_string(dir.join("signaling-secret")).unwrap();
    let keys = signaling::token::TokenKeys::new(&signaling::secret::Secret::new(&secret).unwrap());
    for out in [first, second] {
        let token = String::from_utf8(out.stdout).unwrap();
        let claims = keys.verify(token.trim(), 0).unwrap();
        assert_eq!(
            (claims.room.as_str(), claims.name.as_str()),
            ("demo", "Ann")
        );
    }
    let bad_role = Command::new(BIN)
        .env("HEARTH_SECRET", SECRET)
        .args(["mint", "--room", "r", "--role", "doctor", "--name", "X"])
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn serves_a_minted_token_and_exits_cleanly_on_sigterm() {
    let (mut child, url, mut lines) = common::process::spawn_until_url(
        tokio::process::Command::new(BIN)
            .env("HEARTH_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .args(["serve", "--listen", "127.0.0.1:0"]),
    )
    .await;
    let log = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let token = String::from_utf8(
        Command::new(BIN)
            .env("HEARTH_SECRET", SECRET)
            .args([
                "mint", "--room", "demo", "--role", "resident", "--name", "Mrs Kim", "--ttl", "10m",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(
        json!({"type":"hello","token": token.trim()}).to_string(),
    ))
    .await
    .unwrap();
    let next = |m: Message| -> Value { serde_json::from_str(m.to_text().unwrap()).unwrap() };
    let welcome = next(ws.next().await.unwrap().unwrap());
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["role"], "resident");

    let pid = i32::try_from(child.id().unwrap()).unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let bye = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break serde_json::from_str::<Value>(&t).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(bye["type"], "shutdown");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let log = log.await.unwrap();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains(token.trim()),
        "the token must never be logged"
    );
}
