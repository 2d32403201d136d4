//! The codecs a connection offers and how the one to send with is chosen.

use std::sync::Arc;

use hearth_codec::VideoCodec;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::EngineError;
use crate::media::tone::SAMPLE_RATE;
use crate::options::RoomOptions;

pub(super) fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
        ("transport-cc", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    })
    .collect()
}

pub(super) fn h264_codec(profile: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
        ),
        rtcp_feedback: video_feedback(),
    }
}

pub(super) fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: video_feedback(),
    }
}

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![RTCPFeedback {
            typ: "transport-cc".to_owned(),
            parameter: String::new(),
        }],
    }
}

pub(super) fn codec_of(mime: &str) -> Option<VideoCodec> {
    if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
        Some(VideoCodec::H264)
    } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
        Some(VideoCodec::Vp8)
    } else {
        None
    }
}

/// The video codecs we offer, in our preference order: the ones we prefer to send first, then
/// the rest we can receive; or, when pictures are forwarded encoded, only the forwarded
/// codecs (the front end decodes nothing else), our preferred ones first.
pub(super) fn offered_video_codecs(options: &RoomOptions) -> Vec<VideoCodec> {
    let receivable: &[VideoCodec] = if options.forward_encoded.is_empty() {
        &[VideoCodec::H264, VideoCodec::Vp8]
    } else {
        &options.forward_encoded
    };
    let mut offered: Vec<VideoCodec> = options
        .video_codecs
        .iter()
        .copied()
        .filter(|c| receivable.contains(c))
        .collect();
    for c in receivable {
        if !offered.contains(c) {
            offered.push(*c);
        }
    }
    offered
}

/// The codecs we register, video in our preference order. Only constrained-baseline H.264
/// is offered: OpenH264 decodes nothing else.
pub(super) fn media_engine(options: &RoomOptions) -> Result<MediaEngine, EngineError> {
    let mut me = MediaEngine::default();
    let mut video: Vec<(RTCRtpCodec, u8)> = Vec::new();
    for codec in offered_video_codecs(options) {
        match codec {
            VideoCodec::H264 => {
                video.push((h264_codec("42e01f"), 102));
                video.push((h264_codec("42001f"), 127));
            }
            VideoCodec::Vp8 => video.push((vp8_codec(), 96)),
        }
    }
    for (rtp_codec, payload_type) in video {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec,
                payload_type,
            },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(me)
}

/// The payload type negotiated for `mime` on this sender.
pub(super) async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// Our most preferred codec among those negotiated, with its payload type. For H.264 only a
/// packetization-mode=1 baseline entry qualifies.
pub(super) async fn pick_video_codec(
    sender: &Arc<dyn RtpSender>,
    preference: &[VideoCodec],
) -> Option<(VideoCodec, u8)> {
    let params = sender.get_parameters().await.ok()?;
    let codecs = params.rtp_parameters.codecs;
    preference.iter().find_map(|want| {
        codecs
            .iter()
            .find(|c| {
                codec_of(&c.rtp_codec.mime_type) == Some(*want)
                    && (*want != VideoCodec::H264 || h264_fmtp_ok(&c.rtp_codec.sdp_fmtp_line))
            })
            .map(|c| (*want, c.payload_type))
    })
}

pub(super) fn h264_fmtp_ok(fmtp: &str) -> bool {
    let mut mode1 = false;
    let mut baseline = true;
    for part in fmtp.split(';') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k.trim() {
            "packetization-mode" => mode1 = v.trim() == "1",
            "profile-level-id" => {
                let p = v.trim().to_ascii_lowercase();
                baseline = p.starts_with("42");
            }
            _ => {}
        }
    }
    mode1 && baseline
}
