//! A call relayed through a real TURN server (Debian's coturn), with credentials the signaling
//! server derives from the secret it shares with coturn, and the engines told to use the relay
//! only: without TURN working, no media could flow at all.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hearth_engine::{RelayCheck, RoomOptions};
use signaling::ice::{IceOptions, TurnOptions};
use signaling::secret::Secret;
use signaling::{Server, ServerOptions};

struct Coturn(Child);
impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coturn with the deployment example `packaging/server/turnserver.conf`, its port and secret
/// put in, and what a loopback-only test needs on top (relaying on 127.0.0.1, no TLS).
fn start_coturn(port: u16, secret: &str) -> Coturn {
    let example = include_str!("../../../packaging/server/turnserver.conf");
    let conf = example
        .replace("listening-port=3478", &format!("listening-port={port}"))
        .replace(
            "static-auth-secret=change-me-to-the-same-secret-as-HEARTH_TURN_SECRET",
            &format!("static-auth-secret={secret}"),
        );
    assert!(
        conf.contains(&format!("listening-port={port}")) && conf.contains(secret),
        "the example config has the lines this test replaces"
    );
    let path = std::env::temp_dir().join(format!("hearth-turnserver-{port}.conf"));
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&path)
        .args([
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--min-port=49200",
            "--max-port=49300",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
            "--log-file=stdout",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("coturn's turnserver must be installed (scripts/test installs it)");
    Coturn(child)
}

/// A signaling server that hands out TURN credentials for the coturn on `port`.
fn with_turn(port: u16, secret: &str) -> ServerOptions {
    ServerOptions {
        ice: IceOptions {
            stun_urls: vec![],
            turn: Some(TurnOptions {
                urls: vec![format!("turn:127.0.0.1:{port}?transport=udp")],
                secret: Secret::new(secret).unwrap(),
                ttl: Duration::from_secs(600),
            }),
        },
        ..ServerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_relayed_through_coturn() {
    let secret = "a-shared-turn-secret-of-some-length-0123456789";
    let port = free_udp_port();
    let _coturn = start_coturn(port, secret);
    let _ = server().await; // logging setup
    let server = Server::start(with_turn(port, secret)).await.unwrap();
    // Give coturn a moment to listen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relayed = || RoomOptions {
        relay_only: true,
        ..loopback_options()
    };
    let (ann, mut kim) = call_between(&server, relayed(), relayed()).await;
    let ann_id = ann.room.me().clone();
    let got = collect(&mut kim, Duration::from_secs(3)).await;
    let skipped = skipped_by(&ann, kim.room.me()).await;
    assert_in_order("Kim from Ann, relayed", &got.frames[&ann_id], 60, skipped);
    let stats = kim.room.stats().await.unwrap();
    assert_eq!(
        stats.peers[0].connection_type.as_deref(),
        Some("relay"),
        "{:?}",
        stats.peers[0]
    );
}

/// The pre-call check's relay test: an address is allocated from a working coturn, none from a
/// TURN server that is not there, and "not configured" without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_check_tells_a_working_relay_from_a_dead_one() {
    let secret = "another-shared-turn-secret-0123456789abcdef";
    let port = free_udp_port();
    let _coturn = start_coturn(port, secret);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let working = Server::start(with_turn(port, secret)).await.unwrap();
    let ann = join(&working, "kim", "Ann", loopback_options()).await;
    let r = ann.room.check_relay().await.unwrap();
    assert!(
        matches!(r, RelayCheck::Works(d) if d < Duration::from_secs(5)),
        "{r:?}"
    );

    let dead = Server::start(with_turn(free_udp_port(), secret))
        .await
        .unwrap();
    let bo = join(&dead, "kim", "Bo", loopback_options()).await;
    assert_eq!(bo.room.check_relay().await.unwrap(), RelayCheck::Failed);

    let none = server().await;
    let cy = join(&none, "kim", "Cy", loopback_options()).await;
    assert_eq!(
        cy.room.check_relay().await.unwrap(),
        RelayCheck::NotConfigured
    );
}
