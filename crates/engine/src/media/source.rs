//! Capture threads. A source starts when the first call asks for it and stops when the last
//! call lets go, so the camera and microphone are only open during calls.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_codec::I420Frame;
use tokio::sync::{broadcast, mpsc, watch};

use super::apm::{self, Processor};
use super::camera;
use super::devices::{self, DeviceError};
use super::pattern::{self, Stamp};
use super::resample::Resampler;
use super::tone::{FRAME_SAMPLES, SAMPLE_RATE, Tone};
use crate::events::RoomEvent;
use crate::options::{AudioInput, VideoInput};

/// One captured picture.
#[derive(Debug)]
pub(crate) struct CapturedFrame {
    pub frame: I420Frame,
    pub captured_at: Instant,
    /// Position in the source's stream of pictures, counting from 0. A sender that sees it
    /// jump by more than one skipped the pictures between (its encoder was behind).
    pub index: u64,
}

/// 20 ms of encoded audio, shared by every call's sender.
#[derive(Debug)]
pub(crate) struct AudioPacket {
    /// The Opus payload; empty when DTX suppressed this frame (silence).
    pub payload: Bytes,
    /// Position in the stream, in 20 ms frames.
    pub index: u64,
    /// The microphone (or tone) gave a sample that is not zero in this frame, before
    /// conversion, processing and muting. A device that delivers digital silence (muted at the
    /// source, switched off, unplugged behind a sound server) never does; a working one in a
    /// quiet room does, though noise suppression may make its frames silent.
    pub captured_sound: bool,
}

struct Running {
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the person in the call switches: microphone muted, camera off; and how wide the
/// front end shows the self-view. Shared by the sources, the senders and the self-view, read
/// per frame (relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct Controls {
    muted: AtomicBool,
    camera_off: AtomicBool,
    /// Pixels; 0 until the front end says.
    preview_width: AtomicU32,
}

impl Controls {
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    pub fn set_camera_off(&self, off: bool) {
        self.camera_off.store(off, Ordering::Relaxed);
    }

    pub fn camera_off(&self) -> bool {
        self.camera_off.load(Ordering::Relaxed)
    }

    pub fn set_preview_width(&self, width: u32) {
        self.preview_width.store(width, Ordering::Relaxed);
    }

    /// How wide self-view pictures are made: as wide as the front end shows them, within
    /// bounds, and even (whole chroma planes).
    pub fn preview_width(&self) -> u32 {
        match self.preview_width.load(Ordering::Relaxed) {
            0 => PREVIEW_MAX_WIDTH,
            w => w.clamp(PREVIEW_MIN_WIDTH, PREVIEW_MAX_WIDTH) & !1,
        }
    }
}

/// Latest-picture handle on the running video source.
#[derive(Clone)]
pub(crate) struct VideoFeed {
    pub rx: watch::Receiver<Option<Arc<CapturedFrame>>>,
    pub controls: Arc<Controls>,
    _running: Arc<Running>,
}

/// Handle on the running audio source.
pub(crate) struct AudioFeed {
    pub rx: broadcast::Receiver<Arc<AudioPacket>>,
    _running: Arc<Running>,
}

/// Self-view pictures are at most this wide (the page shows them small; each picture goes to
/// the page whole, so pixels it does not show cost a measurable share of a call: a
/// 320-pixel-wide self-view took 0.06 of a 0.35-core 640x480 call, a 160-wide one 0.04),
/// and as wide as the front end shows them ([`crate::Room::set_self_view_width`]) ...
const PREVIEW_MAX_WIDTH: u32 = 320;
/// ... but at least this wide ...
const PREVIEW_MIN_WIDTH: u32 = 64;
/// ... and at most this often.
const PREVIEW_INTERVAL: Duration = Duration::from_millis(66);

type LatestFrame = watch::Receiver<Option<Arc<CapturedFrame>>>;
/// The running video source, if any, and how to subscribe to it.
type RunningVideo = (Weak<Running>, Option<LatestFrame>);
/// The running audio source, if any, and how to subscribe to it.
type RunningAudio = (Weak<Running>, Option<broadcast::Sender<Arc<AudioPacket>>>);

/// The room's sources, started on demand.
pub(crate) struct Sources {
    video: VideoInput,
    audio: AudioInput,
    /// The capture side of the echo canceller, when audio processing is on.
    processing: Option<Processor>,
    controls: Arc<Controls>,
    /// Where self-view pictures go, when the user wants them.
    preview: Option<mpsc::Sender<RoomEvent>>,
    running_video: tokio::sync::Mutex<RunningVideo>,
    running_audio: tokio::sync::Mutex<RunningAudio>,
}

impl Sources {
    pub fn new(
        video: VideoInput,
        audio: AudioInput,
        processing: Option<Processor>,
        preview: Option<mpsc::Sender<RoomEvent>>,
    ) -> Self {
        Self {
            video,
            audio,
            processing,
            controls: Arc::new(Controls::default()),
            preview,
            running_video: tokio::sync::Mutex::new((Weak::new(), None)),
            running_audio: tokio::sync::Mutex::new((Weak::new(), None)),
        }
    }

    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    pub fn has_video(&self) -> bool {
        self.video != VideoInput::None
    }

    pub fn has_audio(&self) -> bool {
        self.audio != AudioInput::None
    }

    /// The video feed, starting the source if nobody is using it. `Ok(None)`: no video is
    /// wanted; `Err`: the camera could not be opened.
    pub async fn video(&self) -> Result<Option<VideoFeed>, DeviceError> {
        if self.video == VideoInput::None {
            return Ok(None);
        }
        let mut slot = self.running_video.lock().await;
        if let (Some(running), Some(rx)) = (slot.0.upgrade(), slot.1.clone()) {
            return Ok(Some(VideoFeed {
                rx,
                controls: self.controls.clone(),
                _running: running,
            }));
        }
        let (tx, rx) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(Running { stop: stop.clone() });
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let input = self.video.clone();
        let controls = self.controls.clone();
        let spawned = std::thread::Builder::new()
            .name("hearth-video-source".into())
            .spawn(move || match input {
                VideoInput::Synthetic { width, height, fps } => {
                    let _ = opened_tx.send(Ok(()));
                    synthetic_video(width, height, fps.max(1), &tx, &stop, &controls);
                }
                VideoInput::Camera {
                    id,
                    width,
                    height,
                    fps,
                } => {
                    camera::run(
                        id.as_deref(),
                        width,
                        height,
                        fps.max(1),
                        &tx,
                        &stop,
                        &controls,
                        opened_tx,
                    );
                }
                VideoInput::None => {}
            });
        if !started(spawned, opened_rx, crate::events::DeviceKind::Camera).await? {
            return Ok(None);
        }
        *slot = (Arc::downgrade(&running), Some(rx.clone()));
        if let Some(app) = &self.preview {
            tokio::spawn(self_view(rx.clone(), self.controls.clone(), app.clone()));
        }
        Ok(Some(VideoFeed {
            rx,
            controls: self.controls.clone(),
            _running: running,
        }))
    }

    /// The audio feed, starting the source if nobody is using it. `Ok(None)`: no audio is
    /// wanted; `Err`: the microphone could not be opened.
    pub async fn audio(&self) -> Result<Option<AudioFeed>, DeviceError> {
        if self.audio == AudioInput::None {
            return Ok(None);
        }
        let mut slot = self.running_audio.lock().await;
        if let (Some(running), Some(tx)) = (slot.0.upgrade(), slot.1.as_ref()) {
            return Ok(Some(AudioFeed {
                rx: tx.subscribe(),
                _running: running,
            }));
        }
        let (tx, rx) = broadcast::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(Running { stop: stop.clone() });
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let thread_tx = tx.clone();
        let input = self.audio.clone();
        let processing = self.processing.clone();
        let controls = self.controls.clone();
        let spawned = std::thread::Builder::new()
            .name("hearth-audio-source".into())
            .spawn(move || match input {
                AudioInput::Tone => {
                    let _ = opened_tx.send(Ok(()));
                    synthetic_audio(&thread_tx, &stop, processing, controls);
                }
                AudioInput::Microphone { id } => microphone(
                    id.as_deref(),
                    &thread_tx,
                    &stop,
                    opened_tx,
                    processing,
                    controls,
                ),
                AudioInput::None => {}
            });
        if !started(spawned, opened_rx, crate::events::DeviceKind::Microphone).await? {
            return Ok(None);
        }
        *slot = (Arc::downgrade(&running), Some(tx));
        Ok(Some(AudioFeed {
            rx,
            _running: running,
        }))
    }
}

/// Sends small copies of the local picture to the user (the self-view) until the source
/// stops. Frames are dropped, never queued, when the user reads slowly.
async fn self_view(
    mut rx: watch::Receiver<Option<Arc<CapturedFrame>>>,
    controls: Arc<Controls>,
    app: mpsc::Sender<RoomEvent>,
) {
    let mut last: Option<Instant> = None;
    while rx.changed().await.is_ok() {
        if controls.camera_off() || last.is_some_and(|t| t.elapsed() < PREVIEW_INTERVAL) {
            continue;
        }
        let Some(captured) = rx.borrow_and_update().clone() else {
            continue;
        };
        last = Some(Instant::now());
        let frame = &captured.frame;
        let width = controls.preview_width();
        let picture = if frame.width() <= width {
            frame.clone()
        } else {
            // Even sizes keep the chroma planes whole.
            let height = (frame.height() * width / frame.width()) & !1;
            frame.scaled(width, height.max(2))
        };
        if let Err(mpsc::error::TrySendError::Closed(_)) =
            app.try_send(RoomEvent::LocalVideo(Arc::new(picture)))
        {
            return;
        }
    }
}

/// Waits for a source thread to say whether its device opened. `Ok(false)`: the thread could
/// not even be started (logged; the call goes on without this source).
async fn started(
    spawned: std::io::Result<std::thread::JoinHandle<()>>,
    opened: tokio::sync::oneshot::Receiver<Result<(), DeviceError>>,
    kind: crate::events::DeviceKind,
) -> Result<bool, DeviceError> {
    if let Err(e) = spawned {
        tracing::error!(error = %e, ?kind, "could not start a capture thread");
        return Ok(false);
    }
    match opened.await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DeviceError {
            kind,
            message: match kind {
                crate::events::DeviceKind::Camera => {
                    "The camera stopped while starting. The call continues without your picture."
                }
                _ => "The microphone stopped while starting. The call continues, but the others cannot hear you.",
            }
            .into(),
        }),
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
    controls: &Controls,
) {
    let interval = Duration::from_secs(1) / fps;
    let start = Instant::now();
    let mut n: u32 = 0;
    let mut index: u64 = 0;
    let mut tick: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Like a camera that is released while off: no pictures, no work.
        if !controls.camera_off() {
            let captured_at = Instant::now();
            let stamp = Stamp {
                frame: n,
                capture_us: pattern::clock_us(),
            };
            let frame = pattern::render(width, height, stamp);
            tx.send_replace(Some(Arc::new(CapturedFrame {
                frame,
                captured_at,
                index,
            })));
            n = n.wrapping_add(1);
            index += 1;
        }
        tick = tick.wrapping_add(1);
        sleep_until(start + interval * tick);
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

/// Encodes 20 ms frames of 48 kHz mono and hands them to every call.
/// Audio processing (when on) runs here, so the tone and a microphone take the same path.
struct AudioEncoder {
    enc: opus::Encoder,
    out: [u8; 1500],
    index: u64,
    processing: Option<Processor>,
    controls: Arc<Controls>,
}

impl AudioEncoder {
    fn new(processing: Option<Processor>, controls: Arc<Controls>) -> Option<Self> {
        match opus_encoder() {
            Ok(enc) => Some(Self {
                enc,
                out: [0; 1500],
                index: 0,
                processing,
                controls,
            }),
            Err(e) => {
                tracing::error!(error = %e, "could not start the Opus encoder");
                None
            }
        }
    }

    /// Encodes one frame; `captured_sound`: see [`AudioPacket::captured_sound`].
    fn push(
        &mut self,
        pcm: &mut [i16; FRAME_SAMPLES],
        captured_sound: bool,
        tx: &broadcast::Sender<Arc<AudioPacket>>,
    ) {
        if let Some(p) = self.processing.as_mut() {
            apm::capture(p, pcm);
        }
        // Muted: silence goes to the encoder (the echo canceller above still sees the
        // microphone), so DTX sends nothing and the timeline stays continuous.
        if self.controls.muted() {
            pcm.fill(0);
        }
        let payload = match self.enc.encode(pcm, &mut self.out) {
            // Opus in DTX emits 1-2 byte frames for silence; like browsers, don't send them.
            Ok(n) if n <= 2 => Bytes::new(),
            Ok(n) => Bytes::copy_from_slice(&self.out[..n]),
            Err(e) => {
                tracing::warn!(error = %e, "Opus encoding failed");
                Bytes::new()
            }
        };
        // No receivers is fine: nobody is in a call right now.
        let _ = tx.send(Arc::new(AudioPacket {
            payload,
            index: self.index,
            captured_sound,
        }));
        self.index += 1;
    }
}

fn synthetic_audio(
    tx: &broadcast::Sender<Arc<AudioPacket>>,
    stop: &AtomicBool,
    processing: Option<Processor>,
    controls: Arc<Controls>,
) {
    let Some(mut enc) = AudioEncoder::new(processing, controls) else {
        return;
    };
    let mut tone = Tone::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let frame = Duration::from_millis(20);
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tone.next_frame(&mut pcm);
        let sound = pcm.iter().any(|&s| s != 0);
        enc.push(&mut pcm, sound, tx);
        sleep_until(start + frame * enc.index as u32);
    }
}

fn mic_error(message: String) -> DeviceError {
    DeviceError {
        kind: crate::events::DeviceKind::Microphone,
        message,
    }
}

fn mic_unusable(name: &str) -> DeviceError {
    mic_error(format!(
        "The microphone \"{name}\" could not be opened. The call continues, but the others cannot hear you."
    ))
}

/// Captures a microphone through `cpal`, mixes it to mono, resamples it to 48 kHz and encodes it.
fn microphone(
    id: Option<&str>,
    tx: &broadcast::Sender<Arc<AudioPacket>>,
    stop: &AtomicBool,
    opened: tokio::sync::oneshot::Sender<Result<(), DeviceError>>,
    processing: Option<Processor>,
    controls: Arc<Controls>,
) {
    use cpal::traits::{DeviceTrait, StreamTrait};
    let (info, device) = match devices::find_microphone(id) {
        Ok(d) => d,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let config = match device.default_input_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, mic = %info.name, "microphone has no usable format");
            let _ = opened.send(Err(mic_unusable(&info.name)));
            return;
        }
    };
    let channels = usize::from(config.channels().max(1));
    let rate = config.sample_rate().0;
    let (samples_tx, samples_rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(64);
    let stream = device.build_input_stream(
        &config.config(),
        move |data: &[f32], _: &cpal::InputCallbackInfo| {
            let mono: Vec<f32> = data
                .chunks(channels)
                .map(|c| c.iter().sum::<f32>() / c.len() as f32)
                .collect();
            // A full queue drops a few milliseconds rather than blocking the audio thread.
            let _ = samples_tx.try_send(mono);
        },
        |e| tracing::warn!(error = %e, "microphone error"),
        None,
    );
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, mic = %info.name, "microphone did not open");
            let _ = opened.send(Err(mic_unusable(&info.name)));
            return;
        }
    };
    if let Err(e) = stream.play() {
        tracing::warn!(error = %e, mic = %info.name, "microphone did not start");
        let _ = opened.send(Err(mic_unusable(&info.name)));
        return;
    }
    let _ = opened.send(Ok(()));
    let Some(mut enc) = AudioEncoder::new(processing, controls) else {
        return;
    };
    let mut resampler = Resampler::new(rate, SAMPLE_RATE);
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut filled = 0;
    // Judged on the samples as captured: one quieter than 16 bits can hold is still sound.
    let mut sound = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok(chunk) = samples_rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        for s in resampler.process(&chunk) {
            sound |= s != 0.0;
            frame[filled] = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
            filled += 1;
            if filled == FRAME_SAMPLES {
                enc.push(&mut frame, sound, tx);
                filled = 0;
                sound = false;
            }
        }
    }
    drop(stream);
}
