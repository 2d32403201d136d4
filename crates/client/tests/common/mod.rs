//! Shared by the session tests: devices (sessions with synthetic camera and microphone, their
//! own data dir, and a sink that counts pictures) against a real signaling server.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_client::{
    AppState, EncodedVideoFrame, I420Frame, Invitation, ResidentOptions, Session, SessionOptions,
    Settings, SettingsStore, VideoCodec, VideoSink,
};
use hearth_engine::{AudioOutput, Role, RoomOptions};
use signaling::Server;
use tokio::sync::watch;

#[derive(Default)]
pub struct CountingSink {
    pub remote: AtomicUsize,
    pub local: AtomicUsize,
    pub encoded: AtomicUsize,
    /// The last encoded frame's `seq`, and how many times one was skipped.
    pub last_seq: Mutex<Option<u64>>,
    pub gaps: AtomicUsize,
}

impl VideoSink for CountingSink {
    fn remote(&self, _peer: &str, frame: &I420Frame) {
        assert!(frame.width() > 0);
        self.remote.fetch_add(1, Ordering::Relaxed);
    }
    fn local(&self, _frame: &I420Frame) {
        self.local.fetch_add(1, Ordering::Relaxed);
    }
    fn remote_encoded(&self, frame: &EncodedVideoFrame) {
        assert_eq!(frame.codec, VideoCodec::Vp8);
        let mut last = self.last_seq.lock().unwrap();
        if last.is_some_and(|l| frame.seq != l + 1) {
            self.gaps.fetch_add(1, Ordering::Relaxed);
        }
        assert!(
            last.is_some() || frame.keyframe,
            "the first frame is a keyframe"
        );
        *last = Some(frame.seq);
        self.encoded.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn token(server: &Server, room: &str, role: Role, name: &str, sub: Option<&str>) -> String {
    server
        .tokens()
        .mint(room, role, name, sub, Duration::from_secs(600), now())
        .unwrap()
}

pub struct Device {
    pub session: Session,
    pub state: watch::Receiver<AppState>,
    pub video: Arc<CountingSink>,
    pub _dir: tempfile::TempDir,
}

pub fn device(url: &str, token: String, resident: ResidentOptions) -> Device {
    device_with(url, token, resident, Vec::new())
}

/// A device whose sink decodes `forward` itself, as the desktop app's page does.
pub fn device_with(
    url: &str,
    token: String,
    resident: ResidentOptions,
    forward: Vec<VideoCodec>,
) -> Device {
    let invitation = Invitation {
        server: url.to_owned(),
        token,
    };
    start_device(Some(invitation), resident, forward)
}

/// A device with no invitation yet: it shows setup.
pub fn blank_device() -> Device {
    start_device(None, ResidentOptions::default(), Vec::new())
}

fn start_device(
    invitation: Option<Invitation>,
    resident: ResidentOptions,
    forward: Vec<VideoCodec>,
) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        invitation,
        resident,
        ..Settings::default()
    };
    settings.devices.camera = Some("synthetic".into());
    settings.devices.microphone = Some("synthetic".into());
    settings.devices.speaker = Some("none".into());
    SettingsStore::in_dir(dir.path()).save(&settings).unwrap();
    let video = Arc::new(CountingSink::default());
    let room = RoomOptions {
        bind_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        audio_output: AudioOutput::None,
        forward_encoded: forward,
        ..RoomOptions::default()
    };
    let session = Session::start(SessionOptions {
        data_dir: dir.path().to_owned(),
        room,
        camera: (320, 240, 30),
        video: video.clone(),
        kiosk: false,
    });
    Device {
        state: session.watch(),
        session,
        video,
        _dir: dir,
    }
}

/// Waits until `name` is on `d`'s list with `presence`.
#[allow(dead_code)]
pub async fn until_listed(
    d: &mut Device,
    name: &str,
    presence: hearth_client::Presence,
) -> AppState {
    until(d, &format!("{name} listed as {presence:?}"), |s| {
        s.contacts
            .iter()
            .any(|c| c.name == name && c.presence == presence)
    })
    .await
}

pub async fn until(d: &mut Device, what: &str, want: impl Fn(&AppState) -> bool) -> AppState {
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let s = d.state.borrow_and_update();
                if want(&s) {
                    return s.clone();
                }
            }
            d.state.changed().await.unwrap();
        }
    })
    .await;
    match result {
        Ok(s) => s,
        Err(_) => panic!("never saw {what}; last state: {:#?}", d.state.borrow()),
    }
}
