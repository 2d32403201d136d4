//! One WebRTC peer connection to one other person: its media sections, its senders (encode,
//! packetize, write) and receivers (assemble, decode, report).

mod codecs;
mod interceptors;
mod receive;
mod relay;
mod send;

use codecs::{
    answered_video_codecs, choose_video_codec, codec_of, media_engine, negotiated_pt,
    offered_video_codecs, opus_codec, pick_video_codec,
};
use interceptors::{KeyframeRequests, PublishingEstimator};
use receive::{receive_audio, receive_video};
pub use relay::RelayCheck;
pub(crate) use relay::check as relay_check;
use send::{VideoSend, send_audio, spawn_video_sender, watch_keyframe_requests};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_codec::VideoCodec;
use hearth_proto::PeerId;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{CongestionControlBuilder, TwccReceiverBuilder, TwccSenderBuilder};
use rtc::interceptor::{Gcc, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::RTCRtpTransceiverInit;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::EngineError;
use crate::events::RoomEvent;
use crate::media::devices::DeviceError;
use crate::media::playout::AudioOut;
use crate::media::source::Sources;
use crate::options::RoomOptions;
use crate::pacer::PriorityPacer;
use crate::protocol::{Candidate, Sdp, SdpKind};

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
    /// Captured pictures not sent while video was on: see `PeerStats::frames_skipped`.
    pub frames_skipped: AtomicU64,
    /// Pictures handed to the user: decoded here, or whole for a front end that decodes.
    pub frames_delivered: AtomicU64,
    pub keyframes_received: AtomicU64,
    pub keyframe_requests_sent: AtomicU64,
    pub keyframe_requests_received: AtomicU64,
    pub video_bytes_received: AtomicU64,
    /// Size of the latest picture delivered (a forwarded VP8 keyframe declares it).
    pub picture_width: AtomicU64,
    pub picture_height: AtomicU64,
    pub freezes: AtomicU64,
    pub ice_restarts: AtomicU64,
    pub last_frame_at: Mutex<Option<Instant>>,
    /// Bitrate the encoder was last set to, bit/s (0 while video is paused).
    pub video_bitrate: AtomicU64,
    pub video_codec: Mutex<Option<VideoCodec>>,
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
    /// The remote asked us for a keyframe (we send).
    pub keyframe_wanted: AtomicBool,
    /// Our decoder, or the front end's, needs a keyframe from the remote (we receive).
    pub keyframe_needed: AtomicBool,
    pub target_bitrate: Arc<AtomicU64>,
    /// Codecs whose frames go to the front end encoded while `forwarding` is on.
    pub forward_codecs: Vec<VideoCodec>,
    /// Room-wide: forward encoded frames (on) or decode here (off).
    pub forwarding: Arc<AtomicBool>,
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
    pub forwarding: Arc<AtomicBool>,
}

/// A peer connection with its media.
pub(crate) struct PeerLink {
    pub id: u64,
    pub pc: Arc<dyn PeerConnection>,
    pub shared: Arc<LinkShared>,
    video: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>,
    sending: bool,
    /// Whether the video track carries the codec it is sent with (see `settle_video_codec`).
    video_settled: AtomicBool,
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
            keyframe_needed: AtomicBool::new(false),
            target_bitrate: target,
            forward_codecs: options.forward_encoded.clone(),
            forwarding: room.forwarding.clone(),
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

        // The video track gets its codec once the other side's codecs are known
        // (`settle_video_codec`): a codec on it now would become the transceiver's only one.
        let video = media_section(
            &pc,
            RtpCodecKind::Video,
            RTCRtpCodec::default(),
            sources.has_video(),
        )
        .await?;
        let audio =
            media_section(&pc, RtpCodecKind::Audio, opus_codec(), sources.has_audio()).await?;
        Ok(Self {
            id: link_id,
            pc,
            shared,
            video,
            audio,
            sending: false,
            video_settled: AtomicBool::new(false),
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
        if let Some((_, sender, _)) = &self.video
            && let Ok(params) = sender.get_parameters().await
        {
            self.settle_video_codec(&params.rtp_parameters.codecs).await;
        }
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer.clone()).await?;
        self.learn_payload_types().await;
        Ok(Sdp {
            kind: SdpKind::Answer,
            sdp: answer.sdp,
        })
    }

    pub async fn accept_answer(&self, answer: &Sdp) -> Result<(), EngineError> {
        self.settle_video_codec(&answered_video_codecs(&answer.sdp))
            .await;
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

    /// Gives the video track the codec it will be sent with, before the description that
    /// starts the senders is applied. The track is made without one because webrtc-rs takes a
    /// track's codec as the transceiver's codec preference: an offer would then list only
    /// that codec, and answering an offer that lacks it fails ("RTPSender created with no
    /// codecs"). But the sent stream is registered with the interceptors (congestion control,
    /// retransmissions, sender reports) only under a negotiated codec of the track's, so it
    /// gets one here, once, as soon as the negotiated codecs are known.
    async fn settle_video_codec(&self, negotiated: &[RTCRtpCodecParameters]) {
        let Some((track, sender, ssrc)) = &self.video else {
            return;
        };
        if self.video_settled.load(Ordering::Relaxed) {
            return;
        }
        let Some((_, chosen)) =
            choose_video_codec(negotiated, &offered_video_codecs(&self.options))
        else {
            return;
        };
        let current = track.track().await;
        let settled = MediaStreamTrack::new(
            current.stream_id().clone(),
            current.track_id().clone(),
            current.label().clone(),
            RtpCodecKind::Video,
            vec![encoding(*ssrc, chosen.rtp_codec)],
        );
        match sender
            .replace_track(Arc::new(TrackLocalStaticRTP::new(settled)))
            .await
        {
            Ok(()) => self.video_settled.store(true, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "the video track's codec could not be set"),
        }
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
            match pick_video_codec(&sender, &offered_video_codecs(&self.options)).await {
                Some((codec, chosen)) => {
                    let pt = chosen.payload_type;
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

/// One media section: send-receive with a track when we have a source, receive-only when not.
async fn media_section(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    sending: bool,
) -> Result<Option<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>, u32)>, EngineError> {
    if sending {
        return Ok(Some(add_track(pc, kind, codec).await?));
    }
    pc.add_transceiver_from_kind(
        kind,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await?;
    Ok(None)
}

/// The one encoding of a track we send: its SSRC and codec.
fn encoding(ssrc: u32, codec: RTCRtpCodec) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        },
        codec,
        ..Default::default()
    }
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
        vec![encoding(ssrc, codec)],
    )));
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok((track, sender, ssrc))
}
