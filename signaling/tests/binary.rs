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
            .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory"]),
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

    terminate(&child);
    // A resident's tablet gets its rules after the welcome; the shutdown notice follows.
    let bye = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => {
                let m = serde_json::from_str::<Value>(&t).unwrap();
                if m["type"] != "rules" {
                    break m;
                }
            }
            _ => continue,
        }
    };
    assert_eq!(bye["type"], "shutdown");
    assert!(bye["retry_after_ms"].as_u64().is_some());
    assert!(
        bye["seq"].as_u64().is_some(),
        "numbered in the session: {bye}"
    );
    // The client goes (to another node, in a cluster); the drained server exits.
    drop(ws);
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

/// Starts the binary on `store`; returns the child, its HTTP base and WebSocket URL.
async fn serve_on(store: &std::path::Path) -> (tokio::process::Child, String, String) {
    let (child, url, mut lines) = common::process::spawn_until_url(
        tokio::process::Command::new(BIN)
            .env("HEARTH_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--drain-timeout",
                "1s",
                "--store",
            ])
            .arg(store),
    )
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = url.replace("ws://", "http://").replace("/v1/ws", "");
    (child, base, url)
}

fn terminate(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn stop(mut child: tokio::process::Child) {
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

fn minted(role: &str, name: &str) -> String {
    let out = Command::new(BIN)
        .env("HEARTH_SECRET", SECRET)
        .args(["mint", "--room", "office", "--role", role, "--name", name])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A tablet's first messages: its welcome, then its rules.
async fn tablet_rules(url: &str, token: &str) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(
        json!({"type":"hello","token": token}).to_string(),
    ))
    .await
    .unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            texts.push(serde_json::from_str::<Value>(&t).unwrap());
        }
    }
    assert_eq!(texts[0]["type"], "welcome");
    assert_eq!(texts[1]["type"], "rules");
    ws.send(Message::text(json!({"type":"leave"}).to_string()))
        .await
        .unwrap();
    // The server closes once the departure is handled (and its audit record queued).
    while let Some(Ok(m)) = ws.next().await {
        if m.is_close() {
            break;
        }
    }
    texts[1]["rules"].clone()
}

#[tokio::test]
async fn invitations_rules_and_the_audit_trail_survive_a_restart() {
    let dir = temp_dir();
    let store = dir.join("hearth.redb");
    let staff = minted("staff", "Nurse Park");
    let http = reqwest::Client::new();
    let rules = json!({"callers":[{"sub":"inv-x","name":"Ann","auto_answer":true}],
                       "quiet_hours":{"from":"21:00","to":"07:00"},"kiosk":false});

    let (child, base, url) = serve_on(&store).await;
    let create = |name: &str, role: &str| {
        http.post(format!("{base}/v1/invitations"))
            .bearer_auth(&staff)
            .json(&json!({"room":"kim","role":role,"name":name}))
            .send()
    };
    let tablet: Value = create("Mrs Kim", "resident")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dropped: Value = create("Old Friend", "family")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let redeem = |code: Value| {
        http.post(format!("{base}/v1/redeem"))
            .json(&json!({ "code": code }))
            .send()
    };
    let redeemed: Value = redeem(tablet["code"].clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tablet_token = redeemed["token"].as_str().unwrap().to_owned();
    assert_eq!(
        tablet_rules(&url, &tablet_token).await["callers"],
        Value::Null
    );
    let sub = tablet["sub"].as_str().unwrap();
    let put = http
        .put(format!("{base}/v1/tablets/{sub}/rules"))
        .bearer_auth(&staff)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let revoke = http
        .delete(format!(
            "{base}/v1/invitations/{}",
            dropped["id"].as_str().unwrap()
        ))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    // Someone is still in a call when the server stops: their leaving is recorded too.
    let (mut still, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let family = Command::new(BIN)
        .env("HEARTH_SECRET", SECRET)
        .args(["mint", "--room", "kim", "--role", "family", "--name", "Ann"])
        .output()
        .unwrap();
    let family = String::from_utf8(family.stdout).unwrap();
    still
        .send(Message::text(
            json!({"type":"hello","token": family.trim()}).to_string(),
        ))
        .await
        .unwrap();
    assert!(
        still
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );
    stop(child).await;

    let (child, base, url) = serve_on(&store).await;
    // The tablet's rules come back to it, and staff still see them.
    assert_eq!(tablet_rules(&url, &tablet_token).await, rules);
    let tablets: Value = http
        .get(format!("{base}/v1/tablets"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tablets["tablets"][0]["rules"], rules);
    assert!(tablets["tablets"][0]["last_seen"].as_u64().unwrap() > 0);
    // The withdrawn invitation stays withdrawn; the other still redeems.
    let redeem = |code: Value| {
        http.post(format!("{base}/v1/redeem"))
            .json(&json!({ "code": code }))
            .send()
    };
    assert_eq!(redeem(dropped["code"].clone()).await.unwrap().status(), 410);
    assert_eq!(redeem(tablet["code"].clone()).await.unwrap().status(), 200);
    // Both runs' records are in the trail, in order.
    let trail = http
        .get(format!("{base}/v1/audit"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<String> = trail
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        events,
        [
            "invitation_created",
            "invitation_created",
            "joined",
            "left",
            "ended",
            "rules_changed",
            "invitation_revoked",
            "joined",
            "left",
            "ended",
            "joined",
            "left",
            "ended",
        ],
        "{trail}"
    );
    stop(child).await;
    std::fs::remove_dir_all(dir).unwrap();
}
