//! The pre-call check's relay test: can this machine get a TURN allocation from the servers
//! the signaling server handed out? A throwaway connection gathers relay candidates only; the
//! first one that arrives proves the relay works. No media is sent and nothing is connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::IceServer;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
};

use super::codecs::media_engine;
use crate::EngineError;

/// What the relay check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayCheck {
    /// No TURN server is configured (fine on one network; calls across some NATs will fail).
    NotConfigured,
    /// A relay address was allocated after this long.
    Works(Duration),
    /// No relay address came in time.
    Failed,
}

struct Gatherer {
    relay: mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Gatherer {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json()
            && init.candidate.contains(" typ relay")
        {
            let _ = self.relay.send(());
        }
    }
}

pub(crate) async fn check(
    ice_servers: &[IceServer],
    bind_addrs: Vec<SocketAddr>,
    timeout: Duration,
) -> Result<RelayCheck, EngineError> {
    let turn: Vec<RTCIceServer> = ice_servers
        .iter()
        .filter(|s| {
            s.urls
                .iter()
                .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
        })
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect();
    if turn.is_empty() {
        return Ok(RelayCheck::NotConfigured);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let loopback = bind_addrs.iter().any(|a| a.ip().is_loopback());
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(turn)
                .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                .build(),
        )
        .with_media_engine(media_engine(&crate::options::RoomOptions::default())?)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                .with_include_loopback_candidate(loopback)
                .build(),
        )
        .with_handler(Arc::new(Gatherer { relay: tx }))
        .with_udp_addrs(bind_addrs)
        .build()
        .await?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    pc.add_transceiver_from_kind(
        RtpCodecKind::Audio,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await?;
    let started = Instant::now();
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    let result = match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(())) => RelayCheck::Works(started.elapsed()),
        _ => RelayCheck::Failed,
    };
    if let Err(e) = pc.close().await {
        tracing::debug!(error = %e, "relay check connection did not close cleanly");
    }
    Ok(result)
}
