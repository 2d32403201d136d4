//! Call statistics, per peer and for the whole call.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hearth_proto::PeerId;
use serde::Serialize;

use crate::events::ConnectionQuality;
use crate::peer::LinkShared;

/// Statistics for one peer in the call.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStats {
    /// Who.
    pub peer: PeerId,
    /// Round-trip time in milliseconds, when known.
    pub rtt_ms: Option<f64>,
    /// How the connection runs: `host` (direct), `srflx`/`prflx` (through NAT) or `relay`
    /// (through TURN).
    pub connection_type: Option<String>,
    /// Fraction of the remote's packets lost on the way to us (0.0 to 1.0).
    pub loss: f64,
    /// Inbound jitter in milliseconds.
    pub jitter_ms: f64,
    /// What we receive, bit/s.
    pub recv_bitrate_bps: u64,
    /// What our video encoder is set to, bit/s (0 while video is paused).
    pub send_video_bitrate_bps: u64,
    /// The congestion controller's estimate of what the path can carry, bit/s.
    pub estimate_bps: u64,
    /// Decoded frames per second over the last interval.
    pub recv_fps: f64,
    /// Received picture size (decoded, or declared by a forwarded keyframe).
    pub recv_width: u32,
    /// Received picture size (decoded, or declared by a forwarded keyframe).
    pub recv_height: u32,
    /// Frames we sent in total.
    pub frames_sent: u64,
    /// Captured pictures we did not send while video was on: the encoder was still busy
    /// with an earlier one (a slow computer), dropped one to keep to its bitrate or failed
    /// on it, or the frame rate was lowered for bandwidth. Pictures taken while video is
    /// paused or the camera is off are not counted.
    pub frames_skipped: u64,
    /// Frames we decoded in total (or handed over whole, with `RoomOptions::forward_encoded`).
    pub frames_decoded: u64,
    /// Gaps of more than half a second between those frames.
    pub freezes: u64,
    /// ICE restarts this side made (after a failure or a network change).
    pub ice_restarts: u64,
    /// Keyframes received.
    pub keyframes_received: u64,
    /// Keyframe requests we sent.
    pub keyframe_requests_sent: u64,
    /// Keyframe requests we answered.
    pub keyframe_requests_received: u64,
    /// The video codec we send with.
    pub send_codec: Option<String>,
    /// The audio jitter buffer's current target delay, milliseconds.
    pub audio_jitter_buffer_ms: f64,
    /// 20 ms audio frames played from packets.
    pub audio_frames_played: u64,
    /// 20 ms audio frames lost and concealed.
    pub audio_frames_concealed: u64,
    /// 20 ms audio frames lost and recovered from Opus in-band FEC.
    pub audio_frames_recovered: u64,
    /// Audio packets that came too late to be played.
    pub audio_packets_late: u64,
    /// Quality in words.
    pub quality: ConnectionQuality,
}

/// Statistics for the whole call.
#[derive(Debug, Clone, Serialize)]
pub struct CallStats {
    /// One entry per peer in the call.
    pub peers: Vec<PeerStats>,
}

/// Turns counters into rates between two samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct RateSampler {
    last: Option<(Instant, u64, u64)>,
}

impl RateSampler {
    pub fn sample(&mut self, shared: &LinkShared, now: Instant) -> (f64, u64) {
        let frames = shared.counters.frames_delivered.load(Ordering::Relaxed);
        let bytes = shared.counters.video_bytes_received.load(Ordering::Relaxed);
        let out = match self.last {
            Some((t, f, b)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                (
                    (frames.saturating_sub(f)) as f64 / dt,
                    ((bytes.saturating_sub(b)) as f64 * 8.0 / dt) as u64,
                )
            }
            None => (0.0, 0),
        };
        self.last = Some((now, frames, bytes));
        out
    }
}

/// Statistics for one link from its counters and the WebRTC stack's report.
pub(crate) async fn peer_stats(
    audio: Option<crate::media::playout::PeerAudioStats>,
    shared: &LinkShared,
    pc: &std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>,
    sampler: &mut RateSampler,
    quality: ConnectionQuality,
) -> PeerStats {
    let now = Instant::now();
    let (recv_fps, recv_bitrate_bps) = sampler.sample(shared, now);
    let report = pc
        .get_stats(now, webrtc::peer_connection::StatsSelector::None)
        .await;
    let mut rtt_ms = None;
    let mut local_candidate = None;
    let mut lost = 0i64;
    let mut received = 0u64;
    let mut jitter_ms: f64 = 0.0;
    for entry in report.iter() {
        use webrtc::peer_connection::RTCStatsReportEntry as E;
        match entry {
            E::IceCandidatePair(p) if p.nominated => {
                if p.current_round_trip_time > 0.0 {
                    rtt_ms = Some(p.current_round_trip_time * 1000.0);
                }
                local_candidate = Some(p.local_candidate_id.clone());
            }
            E::InboundRtp(s) => {
                lost += s.received_rtp_stream_stats.packets_lost;
                received += s.received_rtp_stream_stats.packets_received;
                // RFC 3550 jitter, in RTP timestamp units of the stream's clock.
                let units_per_ms = match s.received_rtp_stream_stats.rtp_stream_stats.kind {
                    rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio => 48.0,
                    _ => 90.0,
                };
                jitter_ms = jitter_ms.max(s.received_rtp_stream_stats.jitter / units_per_ms);
            }
            _ => {}
        }
    }
    // The pair names its local candidate without the prefix the candidate's own entry has
    // (`RTCLocalIceCandidate_`), so match on the end of the id.
    let connection_type = local_candidate.and_then(|id| {
        report.iter().find_map(|e| match e {
            webrtc::peer_connection::RTCStatsReportEntry::LocalCandidate(c)
                if c.stats.id.ends_with(&id) =>
            {
                Some(c.candidate_type.to_string())
            }
            _ => None,
        })
    });
    let loss = if lost > 0 {
        lost as f64 / (lost as f64 + received as f64)
    } else {
        0.0
    };
    let c = &shared.counters;
    PeerStats {
        peer: shared.peer.clone(),
        rtt_ms,
        connection_type,
        loss,
        jitter_ms,
        recv_bitrate_bps,
        send_video_bitrate_bps: c.video_bitrate.load(Ordering::Relaxed),
        estimate_bps: shared.target_bitrate.load(Ordering::Relaxed),
        recv_fps,
        recv_width: c.picture_width.load(Ordering::Relaxed) as u32,
        recv_height: c.picture_height.load(Ordering::Relaxed) as u32,
        frames_sent: c.frames_sent.load(Ordering::Relaxed),
        frames_skipped: c.frames_skipped.load(Ordering::Relaxed),
        frames_decoded: c.frames_delivered.load(Ordering::Relaxed),
        freezes: c.freezes.load(Ordering::Relaxed),
        ice_restarts: c.ice_restarts.load(Ordering::Relaxed),
        keyframes_received: c.keyframes_received.load(Ordering::Relaxed),
        keyframe_requests_sent: c.keyframe_requests_sent.load(Ordering::Relaxed),
        keyframe_requests_received: c.keyframe_requests_received.load(Ordering::Relaxed),
        send_codec: c
            .video_codec
            .lock()
            .ok()
            .and_then(|c| c.map(|c| c.name().to_owned())),
        audio_jitter_buffer_ms: audio.map_or(0.0, |a| a.jitter.target_ms),
        audio_frames_played: audio.map_or(0, |a| a.jitter.played),
        audio_frames_concealed: audio.map_or(0, |a| a.jitter.concealed),
        audio_frames_recovered: audio.map_or(0, |a| a.jitter.recovered_by_fec),
        audio_packets_late: audio.map_or(0, |a| a.jitter.late),
        quality,
    }
}
