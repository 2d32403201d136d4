//! The pre-call check's device tests: open the camera, microphone and speaker a call would
//! use, through the same code a call does, and report what came out (or a plain sentence).

use std::time::Duration;

use super::devices::DeviceError;
use super::playout::Speaker;
use super::source::Sources;
use super::tone::FRAME_SAMPLES;
use crate::events::DeviceKind;
use crate::options::{AudioInput, AudioOutput, VideoInput};

/// How long a device may take to deliver something.
const WAIT: Duration = Duration::from_secs(4);

fn no_signal(kind: DeviceKind, what: &str) -> DeviceError {
    DeviceError {
        kind,
        message: format!(
            "The {what} opened but sent nothing. Check that it is not covered or in use by another program."
        ),
    }
}

/// Opens the camera and waits for its first picture; returns the picture's size.
pub async fn camera(video: VideoInput) -> Result<Option<(u32, u32)>, DeviceError> {
    let sources = Sources::new(video, AudioInput::None, None, None);
    let Some(mut feed) = sources.video().await? else {
        return Ok(None);
    };
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            if feed.rx.changed().await.is_err() {
                return None;
            }
            if let Some(f) = feed.rx.borrow_and_update().clone() {
                return Some(f);
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| no_signal(DeviceKind::Camera, "camera"))?;
    Ok(Some((frame.frame.width(), frame.frame.height())))
}

/// Listens to the microphone for a second (through the same processing and encoder a call
/// uses) and returns the loudest 20 ms, 0.0 to 1.0. A microphone that gives digital silence
/// (every sample exactly zero as captured, for as long as the check waits, so a device that
/// starts with a moment of zeros is not failed) fails: noise suppression and DTX make a quiet
/// room nearly silent after processing, so only the captured samples tell the two apart.
pub async fn microphone(audio: AudioInput) -> Result<Option<f32>, DeviceError> {
    let sources = Sources::new(VideoInput::None, audio, None, None);
    let Some(mut feed) = sources.audio().await? else {
        return Ok(None);
    };
    let mut decoder =
        opus::Decoder::new(super::tone::SAMPLE_RATE, opus::Channels::Mono).map_err(|e| {
            tracing::warn!(error = %e, "no Opus decoder for the microphone check");
            no_signal(DeviceKind::Microphone, "microphone")
        })?;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut loudest = 0.0f32;
    let mut heard = false;
    let mut frames = 0;
    let listen = async {
        while frames < 50 || !heard {
            match feed.rx.recv().await {
                Ok(p) => {
                    frames += 1;
                    heard |= p.captured_sound;
                    if p.payload.is_empty() {
                        continue;
                    }
                    if let Ok(n) = decoder.decode(&p.payload, &mut pcm, false) {
                        loudest = loudest.max(super::tone::rms(&pcm[..n]));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    };
    if tokio::time::timeout(WAIT, listen).await.is_err() && frames == 0 {
        return Err(no_signal(DeviceKind::Microphone, "microphone"));
    }
    if !heard {
        tracing::info!(frames, "the microphone gave only digital silence");
        return Err(DeviceError {
            kind: DeviceKind::Microphone,
            message:
                "The microphone gives no sound at all. It may be muted, switched off or unplugged."
                    .to_owned(),
        });
    }
    Ok(Some(loudest.min(1.0)))
}

/// Opens the speaker a call would play through.
pub async fn speaker(output: AudioOutput) -> Result<bool, DeviceError> {
    match output {
        AudioOutput::None => Ok(false),
        AudioOutput::Speaker { id } => {
            tokio::task::spawn_blocking(move || Speaker::open(id.as_deref()).map(|_| true))
                .await
                .unwrap_or_else(|_| Err(no_signal(DeviceKind::Speaker, "speaker")))
        }
    }
}
