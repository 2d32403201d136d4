//! Calls of three and four people: a mesh of peer connections, one per pair.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use hearth_engine::{RoomEvent, RoomOptions, VideoInput};

fn small() -> RoomOptions {
    RoomOptions {
        video: VideoInput::Synthetic {
            width: 160,
            height: 120,
            fps: 15,
        },
        ..loopback_options()
    }
}

async fn mesh(size: usize) {
    let server = server().await;
    let names = ["Ann", "Bob", "Cho", "Dae"];
    let mut peers = Vec::new();
    for name in &names[..size] {
        peers.push(join(&server, "kim", name, small()).await);
    }
    let ids: Vec<_> = peers.iter().map(|p| p.room.me().clone()).collect();
    for id in &ids[1..] {
        expect_event(
            &mut peers[0],
            "everyone joining",
            |e| matches!(e, RoomEvent::PeerJoined(p) if p.peer == *id),
        )
        .await;
    }
    // The first person calls each of the others in turn; each answers, and connects to
    // those already in the call by itself.
    for i in 1..size {
        peers[0].room.call(&ids[i]).await.unwrap();
        expect_event(&mut peers[i], "the incoming call", |e| {
            matches!(e, RoomEvent::IncomingCall { .. })
        })
        .await;
        peers[i].room.answer(&ids[0]).await.unwrap();
        for _ in 0..i {
            expect_event(&mut peers[i], "a connection", |e| {
                matches!(e, RoomEvent::CallConnected { .. })
            })
            .await;
        }
    }
    // What each sent before the window (the first links have been up longer).
    let mut skipped_before = HashMap::new();
    for (j, sender) in peers.iter().enumerate() {
        for (i, to) in ids.iter().enumerate() {
            if i != j {
                skipped_before.insert((j, i), skipped_by(sender, to).await);
            }
        }
    }
    let windows = futures_util::future::join_all(
        peers.iter_mut().map(|p| collect(p, Duration::from_secs(4))),
    )
    .await;
    for (i, got) in windows.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            let frames = got
                .frames
                .get(id)
                .unwrap_or_else(|| panic!("{} got no video from {}", names[i], names[j]));
            let skipped = skipped_by(&peers[j], &ids[i]).await - skipped_before[&(j, i)];
            assert_in_order(
                &format!("{} from {}", names[i], names[j]),
                frames,
                30,
                skipped,
            );
        }
    }
    let stats = peers[0].room.stats().await.unwrap();
    assert_eq!(stats.peers.len(), size - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people() {
    mesh(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_people() {
    mesh(4).await;
}
