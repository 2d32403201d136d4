//! Capture threads. A source starts when the first call asks for it and stops when the last
//! call lets go, so the camera and microphone are only open during calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_codec::I420Frame;
use tokio::sync::{broadcast, watch};

use super::pattern::{self, Stamp};
use super::tone::{self, FRAME_SAMPLES, SAMPLE_RATE, Tone};
use crate::options::{AudioInput, VideoInput};

/// One captured picture.
#[derive(Debug)]
pub(crate) struct CapturedFrame {
    pub frame: I420Frame,
    pub captured_at: Instant,
}

/// 20 ms of encoded audio, shared by every call's sender.
#[derive(Debug)]
pub(crate) struct AudioPacket {
    /// The Opus payload; empty when DTX suppressed this frame (silence).
    pub payload: Bytes,
    /// Position in the stream, in 20 ms frames.
    pub index: u64,
}

struct Running {
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Latest-picture handle on the running video source.
#[derive(Clone)]
pub(crate) struct VideoFeed {
    pub rx: watch::Receiver<Option<Arc<CapturedFrame>>>,
    _running: Arc<Running>,
}

/// Handle on the running audio source.
pub(crate) struct AudioFeed {
    pub rx: broadcast::Receiver<Arc<AudioPacket>>,
    _running: Arc<Running>,
}

type LatestFrame = watch::Receiver<Option<Arc<CapturedFrame>>>;
/// The running video source, if any, and how to subscribe to it.
type RunningVideo = (Weak<Running>, Option<LatestFrame>);
/// The running audio source, if any, and how to subscribe to it.
type RunningAudio = (Weak<Running>, Option<broadcast::Sender<Arc<AudioPacket>>>);

/// The room's sources, started on demand.
pub(crate) struct Sources {
    video: VideoInput,
    audio: AudioInput,
    running_video: Mutex<RunningVideo>,
    running_audio: Mutex<RunningAudio>,
}

impl Sources {
    pub fn new(video: VideoInput, audio: AudioInput) -> Self {
        Self {
            video,
            audio,
            running_video: Mutex::new((Weak::new(), None)),
            running_audio: Mutex::new((Weak::new(), None)),
        }
    }

    pub fn has_video(&self) -> bool {
        self.video != VideoInput::None
    }

    pub fn has_audio(&self) -> bool {
        self.audio != AudioInput::None
    }

    /// The video feed, starting the source if nobody is using it.
    pub fn video(&self) -> Option<VideoFeed> {
        let VideoInput::Synthetic { width, height, fps } = self.video else {
            return None;
        };
        let mut slot = self.running_video.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(running), Some(rx)) = (slot.0.upgrade(), slot.1.clone()) {
            return Some(VideoFeed {
                rx,
                _running: running,
            });
        }
        let (tx, rx) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(Running { stop: stop.clone() });
        let spawned = std::thread::Builder::new()
            .name("hearth-video-source".into())
            .spawn(move || synthetic_video(width, height, fps.max(1), &tx, &stop));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the video source thread");
            return None;
        }
        *slot = (Arc::downgrade(&running), Some(rx.clone()));
        Some(VideoFeed {
            rx,
            _running: running,
        })
    }

    /// The audio feed, starting the source if nobody is using it.
    pub fn audio(&self) -> Option<AudioFeed> {
        if self.audio == AudioInput::None {
            return None;
        }
        let mut slot = self.running_audio.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(running), Some(tx)) = (slot.0.upgrade(), slot.1.as_ref()) {
            return Some(AudioFeed {
                rx: tx.subscribe(),
                _running: running,
            });
        }
        let (tx, rx) = broadcast::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(Running { stop: stop.clone() });
        let thread_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("hearth-audio-source".into())
            .spawn(move || synthetic_audio(&thread_tx, &stop));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the audio source thread");
            return None;
        }
        *slot = (Arc::downgrade(&running), Some(tx));
        Some(AudioFeed {
            rx,
            _running: running,
        })
    }
}

/// Sleeps until `deadline`, or returns at once when it has passed.
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn synthetic_video(
    width: u32,
    height: u32,
    fps: u32,
    tx: &watch::Sender<Option<Arc<CapturedFrame>>>,
    stop: &AtomicBool,
) {
    let interval = Duration::from_secs(1) / fps;
    let start = Instant::now();
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let captured_at = Instant::now();
        let stamp = Stamp {
            frame: n,
            capture_us: pattern::clock_us(),
        };
        let frame = pattern::render(width, height, stamp);
        tx.send_replace(Some(Arc::new(CapturedFrame { frame, captured_at })));
        n = n.wrapping_add(1);
        sleep_until(start + interval * n);
    }
    tracing::debug!(frames = n, "video source stopped");
}

/// Opus settings for calls: 48 kHz mono voice, in-band FEC, DTX.
pub(crate) fn opus_encoder() -> Result<opus::Encoder, opus::Error> {
    let mut enc = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    enc.set_inband_fec(true)?;
    enc.set_packet_loss_perc(10)?;
    enc.set_dtx(true)?;
    enc.set_bitrate(opus::Bitrate::Bits(32_000))?;
    Ok(enc)
}

fn synthetic_audio(tx: &broadcast::Sender<Arc<AudioPacket>>, stop: &AtomicBool) {
    let mut enc = match opus_encoder() {
        Ok(enc) => enc,
        Err(e) => {
            tracing::error!(error = %e, "could not start the Opus encoder");
            return;
        }
    };
    let mut tone = Tone::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut out = [0u8; 1500];
    let frame = Duration::from_millis(20);
    let start = Instant::now();
    let mut index: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tone.next_frame(&mut pcm);
        let _level = tone::rms(&pcm);
        let payload = match enc.encode(&pcm, &mut out) {
            // Opus in DTX emits 1-2 byte frames for silence; like browsers, don't send them.
            Ok(n) if n <= 2 => Bytes::new(),
            Ok(n) => Bytes::copy_from_slice(&out[..n]),
            Err(e) => {
                tracing::warn!(error = %e, "Opus encoding failed");
                Bytes::new()
            }
        };
        // No receivers is fine: nobody is in a call right now.
        let _ = tx.send(Arc::new(AudioPacket { payload, index }));
        index += 1;
        sleep_until(start + frame * index as u32);
    }
}
