//! The receive side of a connection: video reassembled, then either decoded on its own
//! thread or handed over encoded (`RoomOptions::forward_encoded`), and timed for lip sync;
//! audio handed to the playout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_codec::VideoCodec;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::LinkShared;
use crate::events::{EncodedVideoFrame, RemoteVideoFrame, RoomEvent};
use crate::rtp::FrameAssembler;

pub(super) async fn request_keyframe(track: &Arc<dyn TrackRemote>, shared: &LinkShared, ssrc: u32) {
    shared
        .counters
        .keyframe_requests_sent
        .fetch_add(1, Ordering::Relaxed);
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc: ssrc,
    };
    if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
        tracing::debug!(error = %e, "could not send a keyframe request");
    }
}

pub(super) struct DecodeJob {
    codec: VideoCodec,
    data: Bytes,
    timestamp: u32,
    /// When the frame's first packet arrived.
    arrived: Instant,
}

/// Least time between two keyframe requests from a receiver. A keyframe is many times a
/// delta frame; asking for them faster than they can cross a congested link only makes the
/// congestion worse.
pub(super) const PLI_INTERVAL: Duration = Duration::from_millis(1000);

pub(super) async fn receive_video(
    track: Arc<dyn TrackRemote>,
    shared: Arc<LinkShared>,
    ssrc: u32,
    initial: Option<VideoCodec>,
) {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<DecodeJob>(8);
    spawn_decoder(jobs_rx, shared.clone());
    let mut assembler: Option<FrameAssembler> = initial.map(FrameAssembler::new);
    let mut last_pli: Option<Instant> = None;
    // First-packet arrival of frames not yet complete, by RTP timestamp.
    let mut first_seen: HashMap<u32, Instant> = HashMap::new();
    let mut known: Option<(u8, VideoCodec)> = None;
    // Frames handed over encoded so far.
    let mut forwarded: u64 = 0;
    // Whether the last frame was forwarded (a switch either way needs a keyframe first).
    let mut was_forwarding = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let event = tokio::select! {
            e = track.poll() => e,
            _ = tick.tick() => {
                let now = Instant::now();
                first_seen.retain(|_, t| now.duration_since(*t) < Duration::from_secs(2));
                let mut want = shared.keyframe_needed.swap(false, Ordering::Relaxed);
                if let Some(a) = assembler.as_mut() {
                    if want {
                        a.want_keyframe();
                    }
                    want |= a.poll(now).request_keyframe;
                }
                if want && last_pli.is_none_or(|t| now.duration_since(t) > PLI_INTERVAL) {
                    last_pli = Some(now);
                    request_keyframe(&track, &shared, ssrc).await;
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                shared
                    .counters
                    .video_bytes_received
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                // The payload type's codec, looked up in the shared map only when the payload
                // type changes rather than for every packet.
                let pt = packet.header.payload_type;
                let codec = match known {
                    Some((known_pt, codec)) if known_pt == pt => Some(codec),
                    _ => {
                        let found = shared
                            .payload_types
                            .lock()
                            .ok()
                            .and_then(|m| m.get(&pt).copied());
                        known = found.map(|c| (pt, c));
                        found.or(initial)
                    }
                };
                let Some(codec) = codec else { continue };
                if assembler.as_ref().is_none_or(|a| a.codec() != codec) {
                    assembler = Some(FrameAssembler::new(codec));
                }
                let Some(a) = assembler.as_mut() else {
                    continue;
                };
                let now = Instant::now();
                let out = a.push(packet, now);
                let forward = shared.forwarding.load(Ordering::Relaxed)
                    && shared.forward_codecs.contains(&codec);
                for frame in out.frames {
                    if frame.keyframe {
                        shared
                            .counters
                            .keyframes_received
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let arrived = first_seen.remove(&frame.timestamp).unwrap_or(now);
                    if forward != was_forwarding && !frame.keyframe {
                        // Switched between forwarding and decoding here: the new decoder
                        // starts at a keyframe (already asked for by the switch).
                        a.want_keyframe();
                        continue;
                    }
                    was_forwarding = forward;
                    let handed = if forward {
                        let size = if codec == VideoCodec::Vp8 && frame.keyframe {
                            hearth_codec::vp8_keyframe_size(&frame.data)
                        } else {
                            None
                        };
                        let event = RoomEvent::RemoteEncodedVideo(EncodedVideoFrame {
                            peer: shared.peer.clone(),
                            codec,
                            data: frame.data,
                            keyframe: frame.keyframe,
                            seq: forwarded,
                            rtp_timestamp: frame.timestamp,
                            present_at: present_at(&shared, arrived, now),
                        });
                        let sent = shared.app.try_send(event).is_ok();
                        if sent {
                            forwarded += 1;
                            note_picture(&shared, size, now);
                        }
                        sent
                    } else {
                        let job = DecodeJob {
                            codec,
                            data: frame.data,
                            timestamp: frame.timestamp,
                            arrived,
                        };
                        jobs_tx.try_send(job).is_ok()
                    };
                    if !handed {
                        // The decoder (or the user) is behind; dropping breaks the reference
                        // chain, so skip ahead to a keyframe.
                        a.want_keyframe();
                    }
                }
                if out.request_keyframe
                    && last_pli.is_none_or(|t| now.duration_since(t) > PLI_INTERVAL)
                {
                    last_pli = Some(now);
                    request_keyframe(&track, &shared, ssrc).await;
                }
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => {}
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// Counts a picture shown (decoded here or handed over encoded) for the statistics: its
/// size when known, and a freeze when the last one was over half a second ago.
fn note_picture(shared: &LinkShared, size: Option<(u32, u32)>, now: Instant) {
    let c = &shared.counters;
    c.frames_delivered.fetch_add(1, Ordering::Relaxed);
    if let Some((width, height)) = size {
        c.picture_width.store(u64::from(width), Ordering::Relaxed);
        c.picture_height.store(u64::from(height), Ordering::Relaxed);
    }
    if let Ok(mut last) = c.last_frame_at.lock() {
        if last.is_some_and(|t| now.duration_since(t) > Duration::from_millis(500)) {
            c.freezes.fetch_add(1, Ordering::Relaxed);
        }
        *last = Some(now);
    }
}

/// Lip sync: when to show a picture so it matches the sound. Audio from the same sender left
/// at the same time and plays its jitter-buffer delay after arriving; the picture is held
/// until the same moment (never shown earlier than it was decoded). This assumes the two
/// streams share the path and the sender's capture delays are alike; it does not use RTCP
/// sender reports.
pub(super) fn present_at(shared: &LinkShared, arrived: Instant, decoded: Instant) -> Instant {
    let audio_delay = shared
        .audio_out
        .stats(&shared.peer)
        .map_or(0.0, |a| a.jitter.target_ms);
    let aligned = arrived + Duration::from_secs_f64(audio_delay / 1000.0);
    aligned.max(decoded)
}

pub(super) fn spawn_decoder(jobs: std::sync::mpsc::Receiver<DecodeJob>, shared: Arc<LinkShared>) {
    let peer = shared.peer.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("hearth-video-recv-{peer}"))
        .spawn(move || {
            let mut decoder: Option<Box<dyn hearth_codec::VideoDecoder>> = None;
            while let Ok(job) = jobs.recv() {
                if decoder.as_ref().is_none_or(|d| d.codec() != job.codec) {
                    decoder = match hearth_codec::decoder(job.codec) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            tracing::error!(error = %e, "no video decoder; video from this peer is not shown");
                            None
                        }
                    };
                }
                let Some(d) = decoder.as_mut() else { continue };
                match d.decode(&job.data) {
                    Ok(Some(frame)) => {
                        let now = Instant::now();
                        note_picture(&shared, Some((frame.width(), frame.height())), now);
                        let event = RoomEvent::RemoteVideo(RemoteVideoFrame {
                            peer: shared.peer.clone(),
                            frame: Arc::new(frame),
                            codec: job.codec,
                            rtp_timestamp: job.timestamp,
                            decoded_at: now,
                            present_at: present_at(&shared, job.arrived, now),
                        });
                        // A full event queue drops pictures, never control events.
                        let _ = shared.app.try_send(event);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "video decode failed; asking for a keyframe");
                        shared.keyframe_needed.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the video decoder");
    }
}

pub(super) async fn receive_audio(track: Arc<dyn TrackRemote>, shared: Arc<LinkShared>) {
    while let Some(event) = track.poll().await {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                shared
                    .audio_out
                    .push(&shared.peer, packet.header.timestamp, packet.payload);
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => {}
        }
    }
}
