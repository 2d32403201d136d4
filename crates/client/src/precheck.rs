//! The pre-call check: camera, microphone, speaker, the server and the TURN relay, each with
//! a result a person can read. Runs the same device code a call does.

use hearth_engine::media::check;
use hearth_engine::{RelayCheck, Room, RoomOptions};
use hearth_proto::care::{CheckOutcome, CheckResult};
use serde::Serialize;
use specta::Type;

/// How one part of the check went: the protocol's own outcome (works, does not work, not used).
pub use hearth_proto::care::CheckOutcome as CheckStatus;

/// One part's result.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct CheckItem {
    /// Works or not.
    pub status: CheckStatus,
    /// Why not, in English (the page shows its own words for the part).
    pub message: Option<String>,
    /// The camera's picture size.
    pub size: Option<(u32, u32)>,
    /// The microphone's loudest level, percent.
    pub level_percent: Option<f64>,
    /// How long the relay took to give an address, milliseconds.
    pub ms: Option<f64>,
}

impl CheckItem {
    fn ok() -> Self {
        Self {
            status: CheckStatus::Ok,
            message: None,
            size: None,
            level_percent: None,
            ms: None,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Failed,
            message: Some(message.into()),
            ..Self::ok()
        }
    }

    fn not_used() -> Self {
        Self {
            status: CheckStatus::NotUsed,
            ..Self::ok()
        }
    }
}

/// Everything the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct PrecheckReport {
    /// The camera.
    pub camera: CheckItem,
    /// The microphone.
    pub microphone: CheckItem,
    /// The speaker.
    pub speaker: CheckItem,
    /// The signaling server.
    pub server: CheckItem,
    /// The TURN relay.
    pub relay: CheckItem,
}

impl PrecheckReport {
    /// True when camera and microphone work (what a clinician needs to know).
    pub fn devices_ok(&self) -> bool {
        self.camera.status == CheckStatus::Ok && self.microphone.status == CheckStatus::Ok
    }

    /// What the server is told: each part's outcome, with no detail (the connection part is
    /// the server and the relay together).
    pub fn summary(&self) -> CheckResult {
        let connection = if [self.server.status, self.relay.status].contains(&CheckOutcome::Failed)
        {
            CheckOutcome::Failed
        } else {
            CheckOutcome::Ok
        };
        CheckResult {
            camera: self.camera.status,
            microphone: self.microphone.status,
            speaker: self.speaker.status,
            connection,
        }
    }
}

/// Runs every part. `room` is the device's room while it is signed in to the server.
pub(crate) async fn run(options: RoomOptions, room: Option<Room>) -> PrecheckReport {
    let camera = match check::camera(options.video.clone()).await {
        Ok(Some(size)) => CheckItem {
            size: Some(size),
            ..CheckItem::ok()
        },
        Ok(None) => CheckItem::not_used(),
        Err(e) => CheckItem::failed(e.message),
    };
    let microphone = match check::microphone(options.audio.clone()).await {
        Ok(Some(level)) => CheckItem {
            level_percent: Some((f64::from(level) * 1000.0).round() / 10.0),
            ..CheckItem::ok()
        },
        Ok(None) => CheckItem::not_used(),
        Err(e) => CheckItem::failed(e.message),
    };
    let speaker = match check::speaker(options.audio_output.clone()).await {
        Ok(true) => CheckItem::ok(),
        Ok(false) => CheckItem::not_used(),
        Err(e) => CheckItem::failed(e.message),
    };
    let (server, relay) = match room {
        None => (
            CheckItem::failed("Hearth is not connected to its server."),
            CheckItem::failed("The relay cannot be checked without the server."),
        ),
        Some(room) => {
            // Signed in means the server answered our hello and keeps the connection.
            let server = CheckItem::ok();
            let relay = match room.check_relay().await {
                Ok(RelayCheck::Works(d)) => CheckItem {
                    ms: Some((d.as_secs_f64() * 10_000.0).round() / 10.0),
                    ..CheckItem::ok()
                },
                Ok(RelayCheck::NotConfigured) => CheckItem::not_used(),
                Ok(RelayCheck::Failed) => CheckItem::failed(
                    "The relay server did not answer. Calls from some networks may not connect.",
                ),
                Err(e) => CheckItem::failed(e.to_string()),
            };
            (server, relay)
        }
    };
    PrecheckReport {
        camera,
        microphone,
        speaker,
        server,
        relay,
    }
}
