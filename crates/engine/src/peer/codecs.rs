//! The codecs a connection offers and how the one to send with is chosen.

use std::io::Cursor;
use std::sync::Arc;

use hearth_codec::VideoCodec;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sdp::SessionDescription;
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
) -> Option<(VideoCodec, RTCRtpCodecParameters)> {
    let params = sender.get_parameters().await.ok()?;
    choose_video_codec(&params.rtp_parameters.codecs, preference)
}

/// Our most preferred codec among `negotiated`, with its entry there.
pub(super) fn choose_video_codec(
    negotiated: &[RTCRtpCodecParameters],
    preference: &[VideoCodec],
) -> Option<(VideoCodec, RTCRtpCodecParameters)> {
    preference.iter().find_map(|want| {
        negotiated
            .iter()
            .find(|c| {
                codec_of(&c.rtp_codec.mime_type) == Some(*want)
                    && (*want != VideoCodec::H264 || h264_fmtp_ok(&c.rtp_codec.sdp_fmtp_line))
            })
            .map(|c| (*want, c.clone()))
    })
}

/// The video codecs of the first video section an answer accepts (port not 0), as the answer
/// writes them. Read from the SDP text because the answering side's choice must be known
/// before the description is applied: applying it starts the senders.
pub(super) fn answered_video_codecs(sdp: &str) -> Vec<RTCRtpCodecParameters> {
    let Ok(parsed) = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())) else {
        return Vec::new();
    };
    let Some(video) = parsed
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media.eq_ignore_ascii_case("video") && m.media_name.port.value != 0)
    else {
        return Vec::new();
    };
    let whole = SessionDescription {
        media_descriptions: vec![video.clone()],
        ..Default::default()
    };
    video
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| {
            let codec = whole.get_codec_for_payload_type(pt).ok()?;
            Some(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: format!("video/{}", codec.name),
                    clock_rate: codec.clock_rate,
                    channels: 0,
                    sdp_fmtp_line: codec.fmtp,
                    rtcp_feedback: Vec::new(),
                },
                payload_type: pt,
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An answer as a browser writes it: audio, then video with VP8 (and its RTX) and two
    /// H.264 entries, of which only the second is packetization-mode=1.
    const ANSWER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 100 102\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:100 H264/90000\r\n\
a=fmtp:100 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    #[test]
    fn an_answers_video_codecs_are_read_in_its_order() {
        let codecs = answered_video_codecs(ANSWER);
        let listed: Vec<(u8, &str)> = codecs
            .iter()
            .map(|c| (c.payload_type, c.rtp_codec.mime_type.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (96, "video/VP8"),
                (97, "video/rtx"),
                (100, "video/H264"),
                (102, "video/H264")
            ]
        );
    }

    #[test]
    fn our_preference_decides_among_the_answered_codecs() {
        let codecs = answered_video_codecs(ANSWER);
        let (codec, entry) =
            choose_video_codec(&codecs, &[VideoCodec::H264, VideoCodec::Vp8]).unwrap();
        assert_eq!(codec, VideoCodec::H264);
        assert_eq!(
            entry.payload_type, 102,
            "packetization-mode=0 is passed over"
        );
        let (codec, entry) =
            choose_video_codec(&codecs, &[VideoCodec::Vp8, VideoCodec::H264]).unwrap();
        assert_eq!((codec, entry.payload_type), (VideoCodec::Vp8, 96));
    }

    #[test]
    fn a_rejected_or_missing_video_section_gives_nothing() {
        let rejected = ANSWER.replace("m=video 9", "m=video 0");
        assert!(answered_video_codecs(&rejected).is_empty());
        let audio_only = &ANSWER[..ANSWER.find("m=video").unwrap()];
        assert!(answered_video_codecs(audio_only).is_empty());
        assert!(answered_video_codecs("not sdp").is_empty());
        assert!(choose_video_codec(&[], &[VideoCodec::Vp8]).is_none());
    }
}
