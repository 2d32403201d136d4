//! One WebRTC peer connection to one other person: its media sections, its senders (encode,
//! packetize, write) and receivers (assemble, decode, report).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_codec::{EncoderConfig, VideoCodec};
use hearth_proto::PeerId;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    Attribute, BandwidthEstimator, EstimatorStats, Gcc, Interceptor, Packet, PacketReport, Slot,
    StreamInfo, TaggedPacket,
};
use rtc::interceptor::{CongestionControlBuilder, TwccReceiverBuilder, TwccSenderBuilder};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::RTCRtpTransceiverInit;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::EngineError;
use crate::adapt::Adapter;
use crate::events::{RemoteVideoFrame, RoomEvent};
use crate::media::devices::DeviceError;
use crate::media::playout::AudioOut;
use crate::media::source::{AudioFeed, Sources, VideoFeed};
use crate::media::tone::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::options::RoomOptions;
use crate::pacer::PriorityPacer;
use crate::protocol::{Candidate, Sdp, SdpKind};
use crate::rtp::{FrameAssembler, VideoPacketizer};

/// What a link reports to the room.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A local ICE candidate to trickle; `None` when gathering finished.
    Candidate(Option<Candidate>),
    /// The connection state changed.
    State(RTCPeerConnectionState),
    /// Our video to this peer paused (audio only) or resumed, following the estimate.
    VideoPaused(bool),
}

/// Counters a link keeps for statistics.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub frames_sent: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub keyframes_received: AtomicU64,
    pub keyframe_requests_sent: AtomicU64,
    pub keyframe_requests_received: AtomicU64,
    pub video_bytes_received: AtomicU64,
    pub audio_packets_received: AtomicU64,
    pub decoded_width: AtomicU64,
    pub decoded_height: AtomicU64,
    pub freezes: AtomicU64,
    pub ice_restarts: AtomicU64,
    pub last_frame_at: Mutex<Option<Instant>>,
    /// Bitrate the congestion controller allows, bit/s.
    pub target_bitrate: AtomicU64,
    /// Bitrate the encoder was last set to, bit/s (0 while video is paused).
    pub video_bitrate: AtomicU64,
    pub video_codec: Mutex<Option<VideoCodec>>,
}

/// Publishes the GCC estimate where the video sender can read it. The estimator itself is
/// `rtc`'s; this wrapper only copies its target out after each update (the pattern the
/// `bandwidth-estimation-from-disk` example of `webrtc` uses), because the chain gives the
/// application no other way to see it.
struct PublishingEstimator {
    inner: Gcc,
    target: Arc<AtomicU64>,
}

impl PublishingEstimator {
    fn publish(&self) {
        self.target
            .store(self.inner.target_bitrate() as u64, Ordering::Relaxed);
    }
}

impl BandwidthEstimator for PublishingEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.publish();
    }
    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.publish();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

/// Lets PLI and FIR reach the application. The default chain consumes inbound RTCP, so
/// without this the sender never hears that the receiver needs a keyframe.
#[derive(Default)]
struct KeyframeRequests {
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if !requests.is_empty() {
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

fn video_feedback() -> Vec<RTCPFeedback> {
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

fn h264_codec(profile: &str) -> RTCRtpCodec {
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

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: video_feedback(),
    }
}

fn opus_codec() -> RTCRtpCodec {
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

fn codec_of(mime: &str) -> Option<VideoCodec> {
    if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
        Some(VideoCodec::H264)
    } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
        Some(VideoCodec::Vp8)
    } else {
        None
    }
}

/// The codecs we register, video in our preference order. Only constrained-baseline H.264
/// is offered: OpenH264 decodes nothing else.
fn media_engine(options: &RoomOptions) -> Result<MediaEngine, EngineError> {
    let mut me = MediaEngine::default();
    let mut video: Vec<(RTCRtpCodec, u8)> = Vec::new();
    for codec in &options.video_codecs {
        match codec {
            VideoCodec::H264 => {
                video.push((h264_codec("42e01f"), 102));
                video.push((h264_codec("42001f"), 127));
            }
            VideoCodec::Vp8 => video.push((vp8_codec(), 96)),
        }
    }
    // Always able to receive both, whatever we prefer to send.
    if !options.video_codecs.contains(&VideoCodec::H264) {
        video.push((h264_codec("42e01f"), 102));
    }
    if !options.video_codecs.contains(&VideoCodec::Vp8) {
        video.push((vp8_codec(), 96));
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

/// Per-link shared state the receive tasks and the senders read.
pub(crate) struct LinkShared {
    pub peer: PeerId,
    /// Where received audio goes.
    pub audio_out: Arc<AudioOut>,
    pub counters: LinkCounters,
    pub app: mpsc::Sender<RoomEvent>,
    /// Negotiated payload type to video codec, for what the remote sends.
    pub payload_types: Mutex<HashMap<u8, VideoCodec>>,
    pub stop: AtomicBool,
    pub keyframe_wanted: AtomicBool,
    pub target_bitrate: Arc<AtomicU64>,
}

struct Handler {
    shared: Arc<LinkShared>,
    to_room: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
    link_id: u64,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let candidate = match event.candidate.to_json() {
            Ok(init) => Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            },
            Err(e) => {
                tracing::warn!(error = %e, "unusable local candidate");
                return;
            }
        };
        let _ = self.to_room.send((
            self.shared.peer.clone(),
            self.link_id,
            LinkEvent::Candidate(Some(candidate)),
        ));
    }

    async fn on_ice_gathering_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceGatheringState,
    ) {
        if state == webrtc::peer_connection::RTCIceGatheringState::Complete {
            let _ = self.to_room.send((
                self.shared.peer.clone(),
                self.link_id,
                LinkEvent::Candidate(None),
            ));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.to_room.send((
            self.shared.peer.clone(),
            self.link_id,
            LinkEvent::State(state),
        ));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        let kind = track.kind().await;
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        let initial = match track.codec(ssrc).await {
            Some(c) => codec_of(&c.mime_type),
            None => None,
        };
        tokio::spawn(async move {
            match kind {
                RtpCodecKind::Video => receive_video(track, shared, ssrc, initial).await,
                RtpCodecKind::Audio => receive_audio(track, shared).await,
                _ => {}
            }
        });
    }
}

/// What every link of a room shares.
pub(crate) struct LinkContext<'a> {
    pub options: Arc<RoomOptions>,
    pub ice_servers: &'a [hearth_proto::IceServer],
    pub sources: &'a Sources,
    pub audio_out: Arc<AudioOut>,
    pub app: mpsc::Sender<RoomEvent>,
    pub to_room: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
}

/// A peer connection with its media.
pub(crate) struct PeerLink {
    pub id: u64,
    pub pc: Arc<dyn PeerConnection>,
    pub shared: Arc<LinkShared>,
    video: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
    sending: bool,
    options: Arc<RoomOptions>,
    to_room: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
}

impl PeerLink {
    /// Builds the connection and its media sections (send-receive where we have a source,
    /// receive-only where we don't).
    pub async fn new(
        peer: PeerId,
        link_id: u64,
        room: &LinkContext<'_>,
    ) -> Result<Self, EngineError> {
        let options = room.options.clone();
        let sources = room.sources;
        let mut me = media_engine(&options)?;
        // RTCP reports, NACK, and TWCC both ways with GCC.
        let registry =
            configure_rtcp_reports(configure_nack(rtc::interceptor::Registry::new(), &mut me));
        let target = Arc::new(AtomicU64::new(u64::from(options.start_bitrate_bps)));
        let estimator = PublishingEstimator {
            inner: Gcc::new(
                f64::from(options.start_bitrate_bps),
                50_000.0,
                f64::from(options.max_bitrate_bps) + 64_000.0,
            ),
            target: target.clone(),
        };
        // Send-side congestion control, assembled as `configure_congestion_control` does but
        // with a pacer that never holds audio behind video.
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            me.register_feedback(
                RTCPFeedback {
                    typ: "transport-cc".to_owned(),
                    parameter: String::new(),
                },
                kind,
            );
            me.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
                },
                kind,
                None,
            )?;
        }
        let registry = registry
            .with(
                Slot::CongestionControl,
                CongestionControlBuilder::new(estimator).build(),
            )
            .with(
                Slot::Pacer,
                PriorityPacer::new(f64::from(options.start_bitrate_bps)),
            )
            .with(Slot::TwccSender, TwccSenderBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
            .with(Slot::Custom(11_500), KeyframeRequests::default());
        let loopback = options.bind_addrs.iter().any(|a| a.ip().is_loopback());
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(if options.mdns {
                MulticastDnsMode::QueryOnly
            } else {
                MulticastDnsMode::Disabled
            })
            .with_include_loopback_candidate(loopback)
            // How long a controlling agent waits for a better pair before nominating one of
            // each kind. With trickle ICE the callee's checks often arrive before its
            // candidates do, so its address is first known as peer-reflexive; the default
            // 1 s wait for those puts a whole second between "Answer" and the picture.
            .with_prflx_acceptance_min_wait(Some(Duration::from_millis(100)))
            .with_srflx_acceptance_min_wait(Some(Duration::from_millis(300)))
            .with_relay_acceptance_min_wait(Some(Duration::from_millis(1000)))
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                room.ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone().unwrap_or_default(),
                        credential: s.credential.clone().unwrap_or_default(),
                    })
                    .collect(),
            )
            .with_ice_transport_policy(if options.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            })
            .build();
        let shared = Arc::new(LinkShared {
            peer: peer.clone(),
            audio_out: room.audio_out.clone(),
            counters: LinkCounters::default(),
            app: room.app.clone(),
            payload_types: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            keyframe_wanted: AtomicBool::new(false),
            target_bitrate: target,
        });
        let handler = Arc::new(Handler {
            shared: shared.clone(),
            to_room: room.to_room.clone(),
            link_id,
        });
        let addrs: Vec<SocketAddr> = options.bind_addrs.clone();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(me)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(addrs)
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let preferred_video = options
            .video_codecs
            .first()
            .copied()
            .unwrap_or(VideoCodec::H264);
        let video = if sources.has_video() {
            let codec = match preferred_video {
                VideoCodec::H264 => h264_codec("42e01f"),
                VideoCodec::Vp8 => vp8_codec(),
            };
            Some(add_track(&pc, RtpCodecKind::Video, codec).await?)
        } else {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Video,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
            None
        };
        let audio = if sources.has_audio() {
            Some(add_track(&pc, RtpCodecKind::Audio, opus_codec()).await?)
        } else {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
            None
        };
        Ok(Self {
            id: link_id,
            pc,
            shared,
            video,
            audio,
            sending: false,
            options,
            to_room: room.to_room.clone(),
        })
    }

    pub async fn create_offer(&self, ice_restart: bool) -> Result<Sdp, EngineError> {
        if ice_restart {
            self.pc.restart_ice().await?;
        }
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer.clone()).await?;
        Ok(Sdp {
            kind: SdpKind::Offer,
            sdp: offer.sdp,
        })
    }

    pub async fn accept_offer(&self, offer: &Sdp) -> Result<Sdp, EngineError> {
        self.pc.set_remote_description(to_rtc(offer)?).await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer.clone()).await?;
        self.learn_payload_types().await;
        Ok(Sdp {
            kind: SdpKind::Answer,
            sdp: answer.sdp,
        })
    }

    pub async fn accept_answer(&self, answer: &Sdp) -> Result<(), EngineError> {
        self.pc.set_remote_description(to_rtc(answer)?).await?;
        self.learn_payload_types().await;
        Ok(())
    }

    pub async fn add_candidate(&self, candidate: Option<Candidate>) -> Result<(), EngineError> {
        let Some(c) = candidate else {
            return Ok(());
        };
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
                url: None,
            })
            .await?;
        Ok(())
    }

    /// Records which payload type means which codec in what the remote sends.
    async fn learn_payload_types(&self) {
        let mut map = HashMap::new();
        for receiver in self.pc.get_receivers().await {
            if let Ok(params) = receiver.get_parameters().await {
                for c in params.rtp_parameters.codecs {
                    if let Some(codec) = codec_of(&c.rtp_codec.mime_type) {
                        map.insert(c.payload_type, codec);
                    }
                }
            }
        }
        for transceiver in self.pc.get_transceivers().await {
            if let Ok(Some(sender)) = transceiver.sender().await
                && let Ok(params) = sender.get_parameters().await
            {
                for c in params.rtp_parameters.codecs {
                    if let Some(codec) = codec_of(&c.rtp_codec.mime_type) {
                        map.entry(c.payload_type).or_insert(codec);
                    }
                }
            }
        }
        if let Ok(mut pts) = self.shared.payload_types.lock() {
            pts.extend(map);
        }
    }

    /// Starts sending once the connection is up. Safe to call again; it starts once.
    pub async fn start_sending(&mut self, sources: &Sources) {
        if self.sending {
            return;
        }
        self.sending = true;
        if let Some((track, sender, ssrc)) = self.video.clone() {
            match pick_video_codec(&sender, &self.options.video_codecs).await {
                Some((codec, pt)) => {
                    if let Ok(mut c) = self.shared.counters.video_codec.lock() {
                        *c = Some(codec);
                    }
                    if let Some(feed) = self.device(sources.video().await).await {
                        spawn_video_sender(
                            feed,
                            VideoSend {
                                track: track.clone(),
                                codec,
                                payload_type: pt,
                                ssrc,
                                link_id: self.id,
                                to_room: self.to_room.clone(),
                            },
                            self.shared.clone(),
                            self.options.clone(),
                        );
                        let shared = self.shared.clone();
                        tokio::spawn(async move { watch_keyframe_requests(track, shared).await });
                    }
                }
                None => {
                    tracing::warn!(peer = %self.shared.peer, "no video codec in common; sending audio only")
                }
            }
        }
        if let Some((track, sender, ssrc)) = self.audio.clone() {
            let pt = negotiated_pt(&sender, MIME_TYPE_OPUS).await;
            match pt {
                Some(pt) => {
                    if let Some(feed) = self.device(sources.audio().await).await {
                        tokio::spawn(send_audio(feed, track, pt, ssrc, self.shared.clone()));
                    }
                }
                None => tracing::warn!(peer = %self.shared.peer, "audio not negotiated"),
            }
        }
    }

    /// A device that failed becomes an event for the user; the call goes on without it.
    async fn device<T>(&self, opened: Result<Option<T>, DeviceError>) -> Option<T> {
        match opened {
            Ok(feed) => feed,
            Err(e) => {
                let _ = self
                    .shared
                    .app
                    .send(RoomEvent::DeviceError {
                        device: e.kind,
                        message: e.message,
                    })
                    .await;
                None
            }
        }
    }

    pub async fn close(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing a peer connection");
        }
    }
}

fn to_rtc(sdp: &Sdp) -> Result<RTCSessionDescription, EngineError> {
    let r = match sdp.kind {
        SdpKind::Offer => RTCSessionDescription::offer(sdp.sdp.clone()),
        SdpKind::Answer => RTCSessionDescription::answer(sdp.sdp.clone()),
    };
    r.map_err(EngineError::from)
}

async fn add_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> Result<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32), EngineError> {
    let ssrc: u32 = rand::random();
    let id = uuid::Uuid::new_v4().to_string();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "hearth".to_owned(),
        format!("{kind}-{id}"),
        format!("{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )));
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok((track, sender, ssrc))
}

/// The payload type negotiated for `mime` on this sender.
async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
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
async fn pick_video_codec(
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

fn h264_fmtp_ok(fmtp: &str) -> bool {
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

async fn watch_keyframe_requests(track: Arc<TrackLocalStaticRTP>, shared: Arc<LinkShared>) {
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

/// Encodes and sends video on its own thread (encoding is CPU work that must not stall the
/// async runtime). Frames are taken latest-first: if encoding falls behind, old frames are
/// skipped rather than queued, which keeps latency low.
/// What a video sender needs besides its media.
struct VideoSend {
    track: Arc<TrackLocalStaticRTP>,
    codec: VideoCodec,
    payload_type: u8,
    ssrc: u32,
    link_id: u64,
    to_room: mpsc::UnboundedSender<(PeerId, u64, LinkEvent)>,
}

/// Encodes and sends video on its own thread (encoding is CPU work that must not stall the
/// async runtime). Frames are taken latest-first: if encoding falls behind, old frames are
/// skipped rather than queued, which keeps latency low. The adapter turns the bandwidth
/// estimate into bitrate, picture size, frame rate, or a pause.
fn spawn_video_sender(
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
            let mut last_keyframe: Option<Instant> = None;
            while !shared.stop.load(Ordering::Relaxed) {
                if handle.block_on(feed.rx.changed()).is_err() {
                    break;
                }
                let Some(captured) = feed.rx.borrow_and_update().clone() else {
                    continue;
                };
                captured_count += 1;
                let source = &captured.frame;
                let adapter =
                    adapter.get_or_insert_with(|| Adapter::new(source.width(), source.height()));
                let target = shared
                    .target_bitrate
                    .load(Ordering::Relaxed)
                    .min(u64::from(options.max_bitrate_bps));
                shared
                    .counters
                    .target_bitrate
                    .store(target, Ordering::Relaxed);
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
                if !captured_count.is_multiple_of(u64::from(settings.fps_divisor)) {
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
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "video encoding failed");
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

async fn send_audio(
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

async fn request_keyframe(track: &Arc<dyn TrackRemote>, shared: &LinkShared, ssrc: u32) {
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

struct DecodeJob {
    codec: VideoCodec,
    data: Bytes,
    timestamp: u32,
    /// When the frame's first packet arrived.
    arrived: Instant,
}

/// Least time between two keyframe requests from a receiver. A keyframe is many times a
/// delta frame; asking for them faster than they can cross a congested link only makes the
/// congestion worse.
const PLI_INTERVAL: Duration = Duration::from_millis(1000);
/// Least time between two keyframes a sender makes on request.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

async fn receive_video(
    track: Arc<dyn TrackRemote>,
    shared: Arc<LinkShared>,
    ssrc: u32,
    initial: Option<VideoCodec>,
) {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<DecodeJob>(8);
    let decode_failed = Arc::new(AtomicBool::new(false));
    spawn_decoder(jobs_rx, shared.clone(), decode_failed.clone());
    let mut assembler: Option<FrameAssembler> = initial.map(FrameAssembler::new);
    let mut last_pli: Option<Instant> = None;
    // First-packet arrival of frames not yet complete, by RTP timestamp.
    let mut first_seen: HashMap<u32, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let event = tokio::select! {
            e = track.poll() => e,
            _ = tick.tick() => {
                let now = Instant::now();
                first_seen.retain(|_, t| now.duration_since(*t) < Duration::from_secs(2));
                let mut want = decode_failed.swap(false, Ordering::Relaxed);
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
                let pt = packet.header.payload_type;
                let codec = shared
                    .payload_types
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&pt).copied())
                    .or(initial);
                let Some(codec) = codec else { continue };
                if assembler.as_ref().is_none_or(|a| a.codec() != codec) {
                    assembler = Some(FrameAssembler::new(codec));
                }
                let Some(a) = assembler.as_mut() else {
                    continue;
                };
                let now = Instant::now();
                let out = a.push(packet, now);
                for frame in out.frames {
                    if frame.keyframe {
                        shared
                            .counters
                            .keyframes_received
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let arrived = first_seen.remove(&frame.timestamp).unwrap_or(now);
                    let job = DecodeJob {
                        codec,
                        data: frame.data,
                        timestamp: frame.timestamp,
                        arrived,
                    };
                    if jobs_tx.try_send(job).is_err() {
                        // The decoder is behind; dropping breaks the reference chain.
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

/// Lip sync: when to show a picture so it matches the sound. Audio from the same sender left
/// at the same time and plays its jitter-buffer delay after arriving; the picture is held
/// until the same moment (never shown earlier than it was decoded). This assumes the two
/// streams share the path and the sender's capture delays are alike; it does not use RTCP
/// sender reports.
fn present_at(shared: &LinkShared, arrived: Instant, decoded: Instant) -> Instant {
    let audio_delay = shared
        .audio_out
        .stats(&shared.peer)
        .map_or(0.0, |a| a.jitter.target_ms);
    let aligned = arrived + Duration::from_secs_f64(audio_delay / 1000.0);
    aligned.max(decoded)
}

fn spawn_decoder(
    jobs: std::sync::mpsc::Receiver<DecodeJob>,
    shared: Arc<LinkShared>,
    failed: Arc<AtomicBool>,
) {
    let peer = shared.peer.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("hearth-video-recv-{peer}"))
        .spawn(move || {
            let mut decoder: Option<Box<dyn hearth_codec::VideoDecoder>> = None;
            while let Ok(job) = jobs.recv() {
                if decoder.as_ref().is_none_or(|d| d.codec() != job.codec) {
                    decoder = hearth_codec::decoder(job.codec).ok();
                }
                let Some(d) = decoder.as_mut() else { continue };
                match d.decode(&job.data) {
                    Ok(Some(frame)) => {
                        let now = Instant::now();
                        let c = &shared.counters;
                        c.frames_decoded.fetch_add(1, Ordering::Relaxed);
                        c.decoded_width
                            .store(u64::from(frame.width()), Ordering::Relaxed);
                        c.decoded_height
                            .store(u64::from(frame.height()), Ordering::Relaxed);
                        if let Ok(mut last) = c.last_frame_at.lock() {
                            if last
                                .is_some_and(|t| now.duration_since(t) > Duration::from_millis(500))
                            {
                                c.freezes.fetch_add(1, Ordering::Relaxed);
                            }
                            *last = Some(now);
                        }
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
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the video decoder");
    }
}

async fn receive_audio(track: Arc<dyn TrackRemote>, shared: Arc<LinkShared>) {
    while let Some(event) = track.poll().await {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                shared
                    .counters
                    .audio_packets_received
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .audio_out
                    .push(&shared.peer, packet.header.timestamp, packet.payload);
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => {}
        }
    }
}
