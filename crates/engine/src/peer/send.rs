//! The send side of a connection: video encoded on its own thread and paced by the
//! adapter, audio packets fanned out from the shared encoder.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_codec::{EncoderConfig, VideoCodec};
use hearth_proto::PeerId;
use rtc::rtp;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use super::{LinkEvent, LinkShared};
use crate::adapt::Adapter;
use crate::media::source::{AudioFeed, VideoFeed};
use crate::media::tone::FRAME_SAMPLES;
use crate::options::RoomOptions;
use crate::rtp::VideoPacketizer;

/// Least time between two keyframes a sender makes on request.
pub(super) const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    shared: Arc<LinkShared>,
) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(_) = event {
            shared.keyframe_wanted.store(true, Ordering::Relaxed);
            shared
                .counters
                .keyframe_requests_received
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a video sender needs besides its media.
pub(super) struct VideoSend {
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) codec: VideoCodec,
    pub(super) payload_type: u8,
    pub(super) ssrc: u32,
    pub(super) link_id: u64,
    pub(super) to_room: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
}

/// Encodes and sends video on its own thread (encoding is CPU work that must not stall the
/// async runtime). Frames are taken latest-first: if encoding falls behind, old frames are
/// skipped rather than queued, which keeps latency low. The adapter turns the bandwidth
/// estimate into bitrate, picture size, frame rate, or a pause.
pub(super) fn spawn_video_sender(
    feed: VideoFeed,
    send: VideoSend,
    shared: Arc<LinkShared>,
    options: Arc<RoomOptions>,
) {
    let handle = tokio::runtime::Handle::current();
    let peer = shared.peer.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("hearth-video-send-{peer}"))
        .spawn(move || {
            // Own the whole feed here (not just its receiver): it keeps the source running.
            let mut feed = feed;
            let config = EncoderConfig {
                bitrate_bps: options.start_bitrate_bps,
                max_fps: 30.0,
            };
            let mut encoder = match hearth_codec::encoder(send.codec, config) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "no video encoder");
                    return;
                }
            };
            let mut packetizer = VideoPacketizer::new(send.codec, send.payload_type, send.ssrc);
            let epoch = Instant::now();
            let ts_base: u32 = rand::random();
            let mut out = Vec::new();
            let mut force_next = true;
            let mut video_bps = config.bitrate_bps;
            let mut adapter: Option<Adapter> = None;
            let mut paused = false;
            let mut captured_count: u64 = 0;
            // The source's index of the last picture seen, to count the ones skipped.
            let mut last_index: Option<u64> = None;
            let skipped = |n: u64| {
                if n > 0 {
                    shared
                        .counters
                        .frames_skipped
                        .fetch_add(n, Ordering::Relaxed);
                }
            };
            let mut last_keyframe: Option<Instant> = None;
            while !shared.stop.load(Ordering::Relaxed) {
                if handle.block_on(feed.rx.changed()).is_err() {
                    break;
                }
                let Some(captured) = feed.rx.borrow_and_update().clone() else {
                    continue;
                };
                if feed.controls.camera_off() {
                    // Nothing is sent; the picture starts with a keyframe when it is back.
                    force_next = true;
                    shared.counters.video_bitrate.store(0, Ordering::Relaxed);
                    continue;
                }
                // Pictures between the last one seen and this were skipped: counted below,
                // unless video is paused. (A source makes no pictures while the camera is off,
                // so one dropped just as it went off is counted when the next comes.)
                let jump = last_index.map_or(0, |last| captured.index.saturating_sub(last + 1));
                last_index = Some(captured.index);
                captured_count += 1;
                let source = &captured.frame;
                let adapter =
                    adapter.get_or_insert_with(|| Adapter::new(source.width(), source.height()));
                let target = shared
                    .target_bitrate
                    .load(Ordering::Relaxed)
                    .min(u64::from(options.max_bitrate_bps));
                // Leave room for audio and packet headers.
                let settings = adapter.update(target.saturating_sub(48_000), Instant::now());
                if settings.paused != paused {
                    paused = settings.paused;
                    force_next = true;
                    tracing::info!(peer = %shared.peer, paused, "video paused for bandwidth");
                    let _ = send.to_room.send((
                        shared.peer.clone(),
                        send.link_id,
                        LinkEvent::VideoPaused(paused),
                    ));
                }
                if paused {
                    shared.counters.video_bitrate.store(0, Ordering::Relaxed);
                    continue;
                }
                skipped(jump);
                if !captured_count.is_multiple_of(u64::from(settings.fps_divisor)) {
                    skipped(1);
                    continue;
                }
                // Follow bitrate changes of more than 5 %.
                if settings.bitrate_bps.abs_diff(video_bps) > video_bps / 20 {
                    video_bps = settings.bitrate_bps;
                    if let Err(e) = encoder.set_bitrate(video_bps) {
                        tracing::warn!(error = %e, "could not change the video bitrate");
                    }
                }
                shared
                    .counters
                    .video_bitrate
                    .store(u64::from(video_bps), Ordering::Relaxed);
                let scaled;
                let frame =
                    if (settings.width, settings.height) == (source.width(), source.height()) {
                        source
                    } else {
                        scaled = source.scaled(settings.width, settings.height);
                        &scaled
                    };
                let requested = last_keyframe
                    .is_none_or(|t: Instant| t.elapsed() >= KEYFRAME_INTERVAL)
                    && shared.keyframe_wanted.swap(false, Ordering::Relaxed);
                let force = force_next || requested;
                if force {
                    last_keyframe = Some(Instant::now());
                }
                match encoder.encode(frame, force, &mut out) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        skipped(1);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "video encoding failed");
                        skipped(1);
                        continue;
                    }
                };
                force_next = false;
                let elapsed = captured.captured_at.saturating_duration_since(epoch);
                let timestamp = ts_base.wrapping_add((elapsed.as_micros() * 9 / 100) as u32);
                let packets = packetizer.packetize(&Bytes::copy_from_slice(&out), timestamp);
                for p in packets {
                    if let Err(e) = handle.block_on(send.track.write_rtp(p)) {
                        tracing::debug!(error = %e, "video packet not sent");
                        break;
                    }
                }
                shared.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the video sender");
    }
}

pub(super) async fn send_audio(
    mut feed: AudioFeed,
    track: Arc<TrackLocalStaticRTP>,
    payload_type: u8,
    ssrc: u32,
    shared: Arc<LinkShared>,
) {
    let mut sequence: u16 = rand::random();
    let ts_base: u32 = rand::random();
    let mut first_index = None;
    let mut after_silence = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let packet = match feed.rx.recv().await {
            Ok(p) => p,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(skipped = n, "audio sender fell behind");
                continue;
            }
            Err(_) => break,
        };
        let base = *first_index.get_or_insert(packet.index);
        if packet.payload.is_empty() {
            after_silence = true;
            continue;
        }
        let timestamp = ts_base.wrapping_add(((packet.index - base) * FRAME_SAMPLES as u64) as u32);
        let p = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                // The first packet after DTX silence starts a talkspurt.
                marker: after_silence,
                payload_type,
                sequence_number: sequence,
                timestamp,
                ssrc,
                ..Default::default()
            },
            payload: packet.payload.clone(),
        };
        after_silence = false;
        sequence = sequence.wrapping_add(1);
        if let Err(e) = track.write_rtp(p).await {
            tracing::debug!(error = %e, "audio packet not sent");
        }
    }
}
