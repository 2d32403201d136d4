//! A consult through the engine: patients wait and report their check, the clinician sees the
//! queue, admits one and calls them, turns the other away; a resident's tablet gets its rules, and
//! a call it declines as unavailable (quiet hours) ends that way for the caller.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hearth_engine::{CallEndReason, Role, RoomEvent};
use hearth_proto::ErrorCode;
use hearth_proto::care::{CheckOutcome, CheckResult};

fn lobby_names(e: &RoomEvent) -> Option<Vec<String>> {
    match e {
        RoomEvent::Lobby(w) => Some(w.iter().map(|p| p.name.clone()).collect()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_sees_the_queue_admits_calls_and_denies() {
    let server = server().await;
    let mut doc = connect_as(
        &server,
        "consult",
        Role::Clinician,
        "Dr Cho",
        loopback_options(),
    )
    .await;
    expect_event(&mut doc, "an empty lobby", |e| {
        lobby_names(e) == Some(vec![])
    })
    .await;

    let mut park = connect_as(
        &server,
        "consult",
        Role::Patient,
        "Mr Park",
        loopback_options(),
    )
    .await;
    expect_event(&mut park, "waiting first", |e| {
        matches!(e, RoomEvent::Waiting { position: 1 })
    })
    .await;
    let mut lee = connect_as(
        &server,
        "consult",
        Role::Patient,
        "Ms Lee",
        loopback_options(),
    )
    .await;
    expect_event(&mut lee, "waiting second", |e| {
        matches!(e, RoomEvent::Waiting { position: 2 })
    })
    .await;
    expect_event(&mut doc, "both in arrival order", |e| {
        lobby_names(e) == Some(vec!["Mr Park".into(), "Ms Lee".into()])
    })
    .await;

    // Mr Park's check reaches the clinician.
    let result = CheckResult {
        camera: CheckOutcome::Ok,
        microphone: CheckOutcome::Failed,
        speaker: CheckOutcome::Ok,
        connection: CheckOutcome::Ok,
    };
    park.room.report_check(result, None).await.unwrap();
    let lobby = expect_event(
        &mut doc,
        "the check in the lobby",
        |e| matches!(e, RoomEvent::Lobby(w) if w.first().is_some_and(|p| p.check.is_some())),
    )
    .await;
    let RoomEvent::Lobby(waiting) = lobby else {
        unreachable!()
    };
    assert_eq!(waiting[0].check.unwrap().result, result);

    // Admit the first and call him: the consult connects.
    let park_id = waiting[0].peer.clone();
    doc.room.admit(&park_id).await.unwrap();
    expect_event(&mut park, "let in", |e| {
        matches!(e, RoomEvent::Joined { .. })
    })
    .await;
    expect_event(
        &mut doc,
        "him joining",
        |e| matches!(e, RoomEvent::PeerJoined(p) if p.peer == park_id),
    )
    .await;
    doc.room.call(&park_id).await.unwrap();
    expect_event(&mut park, "the clinician's call", |e| {
        matches!(e, RoomEvent::IncomingCall { .. })
    })
    .await;
    park.room.answer(doc.room.me()).await.unwrap();
    for p in [&mut doc, &mut park] {
        expect_event(p, "connected", |e| {
            matches!(e, RoomEvent::CallConnected { .. })
        })
        .await;
    }

    // Admitting someone who is not waiting is refused, and the connection goes on.
    doc.room.admit(&park_id).await.unwrap();
    expect_event(&mut doc, "a refusal", |e| {
        matches!(
            e,
            RoomEvent::Refused {
                code: ErrorCode::UnknownPeer,
                ..
            }
        )
    })
    .await;

    // Ms Lee is turned away with a sentence she sees.
    let lee_id = lee.room.me().clone();
    doc.room
        .deny(&lee_id, Some("Please book another time.".into()))
        .await
        .unwrap();
    let gone = expect_event(&mut lee, "the denial", |e| {
        matches!(e, RoomEvent::Disconnected { .. })
    })
    .await;
    let RoomEvent::Disconnected { reason, code } = gone else {
        unreachable!()
    };
    assert_eq!(code, Some(ErrorCode::Denied));
    assert!(reason.contains("Please book another time."), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_gets_its_rules_and_can_decline_as_unavailable() {
    let server = server().await;
    let mut kim = connect_as(
        &server,
        "kim",
        Role::Resident,
        "Mrs Kim",
        loopback_options(),
    )
    .await;
    let rules = expect_event(&mut kim, "rules", |e| matches!(e, RoomEvent::Rules(_))).await;
    let RoomEvent::Rules(rules) = rules else {
        unreachable!()
    };
    assert_eq!(rules.callers, None);

    let mut ann = join(&server, "kim", "Ann", loopback_options()).await;
    let kim_id = kim.room.me().clone();
    ann.room.call(&kim_id).await.unwrap();
    let ann_id = ann.room.me().clone();
    expect_event(
        &mut kim,
        "Ann calling",
        |e| matches!(e, RoomEvent::IncomingCall { peer, .. } if *peer == ann_id),
    )
    .await;
    kim.room.decline_unavailable(&ann_id).await.unwrap();
    expect_end(&mut ann, CallEndReason::Unavailable).await;
}
