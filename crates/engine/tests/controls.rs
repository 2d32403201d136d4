//! What a person switches during a call, and what others in the room see: presence (in a call
//! or free), camera off (the other side is told it was a choice, and pictures stop), mute
//! (silence reaches the other side), and the self-view.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use hearth_engine::{PeerId, RoomEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_camera_off_mute_and_self_view() {
    let server = server().await;
    let mut with_self_view = loopback_options();
    with_self_view.self_view = true;
    let (mut ann, mut kim) = call_between(&server, with_self_view, loopback_options()).await;
    let (ann_id, kim_id) = (ann.room.me().clone(), kim.room.me().clone());

    // A newcomer learns at once that both are busy.
    let mut cho = join(&server, "kim", "Cho", loopback_options()).await;
    expect_presence(&mut cho, &[&ann_id, &kim_id], true).await;

    // Ann sees herself.
    let own = expect_event(&mut ann, "a self-view picture", |e| {
        matches!(e, RoomEvent::LocalVideo(_))
    })
    .await;
    let RoomEvent::LocalVideo(picture) = own else {
        unreachable!()
    };
    assert!(
        picture.width() <= 320,
        "self-view is small: {}",
        picture.width()
    );
    // As wide as the front end shows it (even, and within 64..=320 pixels).
    for (asked, made) in [(161, 160), (10, 64)] {
        ann.room.set_self_view_width(asked).await.unwrap();
        let sized = expect_event(
            &mut ann,
            "a self-view picture of the width shown",
            |e| matches!(e, RoomEvent::LocalVideo(p) if p.width() == made),
        )
        .await;
        let RoomEvent::LocalVideo(p) = sized else {
            unreachable!()
        };
        assert_eq!(p.height(), made * 3 / 4, "the camera's shape is kept");
    }

    // Camera off: Kim is told it was Ann's choice, and her pictures stop.
    ann.room.set_camera_off(true).await.unwrap();
    expect_event(&mut kim, "camera off", |e| {
        matches!(e, RoomEvent::RemoteVideoPaused { peer, paused: true, camera_off: true } if *peer == ann_id)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet = collect(&mut kim, Duration::from_secs(1)).await;
    let frames = quiet.frames.get(&ann_id).map_or(0, Vec::len);
    assert!(
        frames <= 2,
        "pictures kept coming with the camera off: {frames}"
    );
    let skipped_before = skipped_by(&ann, &kim_id).await;
    ann.room.set_camera_off(false).await.unwrap();
    expect_event(&mut kim, "camera back on", |e| {
        matches!(e, RoomEvent::RemoteVideoPaused { peer, paused: false, camera_off: false } if *peer == ann_id)
    })
    .await;
    let back = collect(&mut kim, Duration::from_secs(2)).await;
    assert_in_order(
        "kim after camera on",
        back.frames.get(&ann_id).unwrap(),
        20,
        skipped_by(&ann, &kim_id).await - skipped_before,
    );

    // Muted: the tone stops reaching Kim; unmuted, it comes back.
    let before = collect(&mut kim, Duration::from_secs(1)).await;
    let loud = loudest(&before, &ann_id);
    assert!(loud > 0.02, "the tone is heard before muting: {loud}");
    ann.room.set_muted(true).await.unwrap();
    // What was already sent or buffered still plays out, for longer on a busy machine: the
    // tone must fall silent within a few seconds and then stay silent.
    let level = until_level(&mut kim, &ann_id, |l| l < loud / 5.0).await;
    assert!(
        level < loud / 5.0,
        "muted audio is still heard after 5 s: {level} (before: {loud})"
    );
    let muted = collect(&mut kim, Duration::from_millis(1500)).await;
    let level = loudest(&muted, &ann_id);
    assert!(
        level < loud / 5.0,
        "muted audio came back: {level} (before: {loud})"
    );
    ann.room.set_muted(false).await.unwrap();
    let level = until_level(&mut kim, &ann_id, |l| l > loud / 2.0).await;
    assert!(
        level > loud / 2.0,
        "unmuted audio is not heard within 5 s: {level} (before: {loud})"
    );

    // The call ends: Cho sees both free again.
    ann.room.hang_up_all().await.unwrap();
    expect_presence(&mut cho, &[&ann_id, &kim_id], false).await;
}

/// The loudest level of `peer`'s audio in successive half seconds, until one meets `wanted` or
/// five seconds have passed; returns the last.
async fn until_level(watcher: &mut Peer, peer: &PeerId, wanted: impl Fn(f32) -> bool) -> f32 {
    let mut level = f32::NAN;
    for _ in 0..10 {
        let heard = collect(watcher, Duration::from_millis(500)).await;
        level = loudest(&heard, peer);
        if wanted(level) {
            break;
        }
    }
    level
}

/// Waits until `watcher` has heard every one of `peers` announce `in_call`, in whatever order
/// their announcements arrive (each travels its own way through the server).
async fn expect_presence(watcher: &mut Peer, peers: &[&PeerId], in_call: bool) {
    let mut missing: Vec<PeerId> = peers.iter().map(|p| (*p).clone()).collect();
    while !missing.is_empty() {
        let RoomEvent::PeerPresence { peer, .. } = expect_event(
            watcher,
            &format!("presence (in a call: {in_call}) from {missing:?}"),
            |e| matches!(e, RoomEvent::PeerPresence { peer, in_call: c } if *c == in_call && missing.contains(peer)),
        )
        .await
        else {
            unreachable!()
        };
        missing.retain(|p| *p != peer);
    }
}

/// The loudest audio level heard from `peer` in a window (0 when nothing was heard).
fn loudest(got: &Received, peer: &PeerId) -> f32 {
    got.audio_levels
        .get(peer)
        .map_or(0.0, |l| l.iter().copied().fold(0.0, f32::max))
}
