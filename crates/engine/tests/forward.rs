//! Encoded pictures handed to the front end (`RoomOptions::forward_encoded`): only the
//! forwarded codec is negotiated, even with a peer that prefers another; the frames come
//! whole, in order, keyframe first, and decode; a keyframe comes when asked for; and
//! decoding can move back into the engine (the front end's decoder failed) and out again.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use hearth_engine::media::pattern;
use hearth_engine::{EncodedVideoFrame, PeerId, RoomEvent, VideoCodec};

/// Encoded frames from `from` that reach `peer` within `window`.
async fn encoded(peer: &mut Peer, from: &PeerId, window: Duration) -> Vec<EncodedVideoFrame> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, peer.events.recv()).await {
        if let RoomEvent::RemoteEncodedVideo(f) = e
            && f.peer == *from
        {
            got.push(f);
        }
    }
    got
}

/// Waits for the call to connect, keeping the encoded frames that come first: pictures can
/// flow before the connection's own state event arrives.
async fn connected(peer: &mut Peer) -> Vec<EncodedVideoFrame> {
    let mut early = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, peer.events.recv()).await {
            Ok(Some(RoomEvent::CallConnected { .. })) => return early,
            Ok(Some(RoomEvent::RemoteEncodedVideo(f))) => early.push(f),
            Ok(Some(_)) => {}
            _ => panic!("{}: the call never connected", peer.name),
        }
    }
}

/// Decodes the frames in order with the engine's own VP8 decoder; returns the test
/// pattern's frame numbers.
fn decode_all(frames: &[EncodedVideoFrame]) -> Vec<u32> {
    let mut decoder = hearth_codec::decoder(VideoCodec::Vp8).unwrap();
    frames
        .iter()
        .map(|f| {
            let picture = decoder
                .decode(&f.data)
                .unwrap()
                .expect("every frame decodes to a picture");
            pattern::read(&picture).expect("the test pattern").frame
        })
        .collect()
}

fn assert_whole(who: &str, frames: &[EncodedVideoFrame], at_least: usize) {
    assert!(
        frames.len() >= at_least,
        "{who}: only {} frames, wanted {at_least}",
        frames.len()
    );
    assert!(frames[0].keyframe, "{who}: the first frame is a keyframe");
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "{who}: frames handed over in sequence"
        );
        assert!(pair[1].present_at >= pair[0].present_at, "{who}: in order");
    }
    for f in frames {
        assert_eq!(f.codec, VideoCodec::Vp8, "{who}: only VP8 was offered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_frames_reach_the_front_end_whole() {
    let server = server().await;
    let mut forwarding = loopback_options();
    forwarding.forward_encoded = vec![VideoCodec::Vp8];
    // Kim prefers H.264 (the default); Ann's offer has only VP8, so both send VP8.
    let (mut ann, mut kim) = pair(&server, forwarding, loopback_options()).await;
    ring(&mut ann, &mut kim).await;
    kim.room.answer(ann.room.me()).await.unwrap();
    let mut first = connected(&mut ann).await;
    connected(&mut kim).await;
    let kim_id = kim.room.me().clone();
    let ann_id = ann.room.me().clone();

    first.extend(encoded(&mut ann, &kim_id, Duration::from_secs(2)).await);
    assert_whole("ann", &first, 20);
    assert_eq!(first[0].seq, 0, "counting starts at 0");
    let numbers = decode_all(&first);
    let skipped = skipped_by(&kim, &ann_id).await;
    assert_in_order("ann, decoding the forwarded frames", &numbers, 20, skipped);

    // Kim decodes Ann's video as usual, and it is VP8 too.
    let at_kim = expect_event(
        &mut kim,
        "ann's decoded picture",
        |e| matches!(e, RoomEvent::RemoteVideo(f) if f.peer == ann_id),
    )
    .await;
    let RoomEvent::RemoteVideo(f) = at_kim else {
        unreachable!()
    };
    assert_eq!(f.codec, VideoCodec::Vp8);

    // Ann's front end lost its place: a keyframe comes soon, the sequence goes on.
    let last_seq = first.last().unwrap().seq;
    ann.room.request_keyframe(&kim_id).await.unwrap();
    let after = encoded(&mut ann, &kim_id, Duration::from_millis(1500)).await;
    assert!(after[0].seq > last_seq);
    assert!(
        after.iter().any(|f| f.keyframe),
        "a keyframe came after asking for one"
    );

    // Decoding moves into the engine: decoded pictures, in order, and nothing encoded.
    let skipped_before = skipped_by(&kim, &ann_id).await;
    ann.room.set_forward_encoded(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let decoded = collect(&mut ann, Duration::from_secs(2)).await;
    assert_in_order(
        "ann, decoding here",
        decoded.frames.get(&kim_id).unwrap(),
        20,
        skipped_by(&kim, &ann_id).await - skipped_before,
    );
    assert!(
        encoded(&mut ann, &kim_id, Duration::from_millis(500))
            .await
            .is_empty(),
        "no encoded frames while decoding here"
    );

    // And back out again, from a keyframe.
    let skipped_before = skipped_by(&kim, &ann_id).await;
    ann.room.set_forward_encoded(true).await.unwrap();
    let again = encoded(&mut ann, &kim_id, Duration::from_secs(2)).await;
    assert_whole("ann, forwarding again", &again, 15);
    assert_in_order(
        "ann, forwarding again",
        &decode_all(&again),
        15,
        skipped_by(&kim, &ann_id).await - skipped_before,
    );

    ann.room.leave().await;
    kim.room.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_side_answers_an_offer_that_prefers_h264() {
    let server = server().await;
    let mut forwarding = loopback_options();
    forwarding.forward_encoded = vec![VideoCodec::Vp8];
    // Kim (the default: H.264 first, then VP8) calls Ann, who forwards VP8 only: Ann's answer
    // keeps VP8 and the call connects with VP8 both ways.
    let (mut kim, mut ann) = pair(&server, loopback_options(), forwarding).await;
    ring(&mut kim, &mut ann).await;
    ann.room.answer(kim.room.me()).await.unwrap();
    let mut frames = connected(&mut ann).await;
    connected(&mut kim).await;
    let kim_id = kim.room.me().clone();
    frames.extend(encoded(&mut ann, &kim_id, Duration::from_secs(2)).await);
    assert_whole("ann", &frames, 20);
}
