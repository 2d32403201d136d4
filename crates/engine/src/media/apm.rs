//! Echo cancellation, noise suppression and automatic gain through Debian's
//! libwebrtc-audio-processing (the `webrtc-audio-processing` crate, 0.5). One processor per
//! room: the capture side cleans what the microphone (or the synthetic tone) sends, the render
//! side is told what the speaker plays so the echo of it can be removed.

use webrtc_audio_processing as apm;

/// Samples in one 10 ms processing frame at 48 kHz.
pub(crate) const APM_FRAME: usize = apm::NUM_SAMPLES_PER_FRAME as usize;

/// A processor handle; clones share the same processing state.
pub(crate) type Processor = apm::Processor;

/// Settings for calls on a tablet speaker: AEC at a moderate level with delay-agnostic mode
/// (the speaker-to-microphone delay of a tablet is unknown), adaptive digital gain towards
/// -3 dBFS with a limiter, moderate noise suppression, and the high-pass filter.
pub(crate) fn new_processor() -> Option<Processor> {
    let init = apm::InitializationConfig {
        num_capture_channels: 1,
        num_render_channels: 1,
        ..apm::InitializationConfig::default()
    };
    let mut p = match apm::Processor::new(&init) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "audio processing unavailable; sending audio unprocessed");
            return None;
        }
    };
    p.set_config(apm::Config {
        echo_cancellation: Some(apm::EchoCancellation {
            suppression_level: apm::EchoCancellationSuppressionLevel::Moderate,
            enable_extended_filter: true,
            enable_delay_agnostic: true,
            stream_delay_ms: None,
        }),
        gain_control: Some(apm::GainControl {
            mode: apm::GainControlMode::AdaptiveDigital,
            target_level_dbfs: 3,
            compression_gain_db: 9,
            enable_limiter: true,
        }),
        noise_suppression: Some(apm::NoiseSuppression {
            suppression_level: apm::NoiseSuppressionLevel::Moderate,
        }),
        voice_detection: None,
        enable_transient_suppressor: false,
        enable_high_pass_filter: true,
    });
    Some(p)
}

/// Runs 20 ms of capture (48 kHz mono, i16) through the processor, in place.
pub(crate) fn capture(p: &mut Processor, pcm: &mut [i16]) {
    let mut buf = [0f32; APM_FRAME];
    for chunk in pcm.chunks_exact_mut(APM_FRAME) {
        for (d, s) in buf.iter_mut().zip(chunk.iter()) {
            *d = f32::from(*s) / 32768.0;
        }
        if let Err(e) = p.process_capture_frame(&mut buf) {
            tracing::debug!(error = %e, "capture processing failed");
            return;
        }
        for (d, s) in chunk.iter_mut().zip(buf.iter()) {
            *d = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        }
    }
}

/// Tells the processor what the speaker is about to play (48 kHz mono, f32).
pub(crate) fn render(p: &mut Processor, pcm: &[f32]) {
    let mut buf = [0f32; APM_FRAME];
    for chunk in pcm.chunks_exact(APM_FRAME) {
        buf.copy_from_slice(chunk);
        if let Err(e) = p.process_render_frame(&mut buf) {
            tracing::debug!(error = %e, "render processing failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{FRAME_SAMPLES, Tone, rms};

    #[test]
    fn echo_of_what_the_speaker_plays_is_removed_from_the_microphone() {
        let mut mic_side = new_processor().unwrap();
        let mut speaker_side = mic_side.clone();
        // The far end's voice: a tone the speaker plays, which the microphone picks up
        // (attenuated, 10 ms later) with nobody talking locally.
        let mut far = Tone::new();
        let mut played = [0i16; FRAME_SAMPLES];
        let mut previous = [0f32; FRAME_SAMPLES];
        let mut before = 0.0f64;
        let mut after = 0.0f64;
        for n in 0..400 {
            far.next_frame(&mut played);
            let speaker: Vec<f32> = played.iter().map(|&s| f32::from(s) / 32768.0).collect();
            render(&mut speaker_side, &speaker);
            let mut mic: Vec<i16> = previous[FRAME_SAMPLES / 2..]
                .iter()
                .chain(&speaker[..FRAME_SAMPLES / 2])
                .map(|&s| (s * 0.5 * 32767.0) as i16)
                .collect();
            previous.copy_from_slice(&speaker);
            if n >= 300 {
                before += f64::from(rms(&mic));
                capture(&mut mic_side, &mut mic);
                after += f64::from(rms(&mic));
            } else {
                capture(&mut mic_side, &mut mic);
            }
        }
        // After adapting for 6 s, the echo is down by at least 10 dB.
        assert!(
            after < before / 3.16,
            "echo before {before:.3}, after {after:.3}"
        );
    }
}
