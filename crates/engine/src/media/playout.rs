//! Received audio, from packets to the speaker: one jitter buffer and Opus decoder per peer,
//! a mixer, the echo canceller's render side, and the speaker (through `cpal`), paced by a
//! 20 ms playout clock. With no speaker the clock still runs, so levels, statistics and the
//! echo reference behave the same.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_proto::PeerId;
use tokio::sync::mpsc;

use super::apm::{self, Processor};
use super::devices::DeviceError;
use super::jitter::{JitterBuffer, JitterStats, Playout};
use super::resample::Resampler;
use super::tone::{self, FRAME_SAMPLES, SAMPLE_RATE};
use crate::events::{DeviceKind, RoomEvent};

/// How often levels are reported.
const LEVEL_INTERVAL: Duration = Duration::from_millis(250);
/// Most audio queued for the speaker; beyond it the oldest is dropped to keep latency low.
const MAX_QUEUED: usize = SAMPLE_RATE as usize / 8;

struct PeerAudio {
    jitter: JitterBuffer,
    decoder: opus::Decoder,
    level_sum: f64,
    level_n: u32,
    last_report: Instant,
}

/// Audio statistics of one peer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeerAudioStats {
    pub jitter: JitterStats,
}

struct Shared {
    peers: Mutex<HashMap<PeerId, PeerAudio>>,
    stop: AtomicBool,
}

/// The room's audio output.
pub(crate) struct AudioOut {
    shared: Arc<Shared>,
}

impl Drop for AudioOut {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Where the mix goes.
pub(crate) enum Sink {
    /// Nowhere (no speaker wanted).
    None,
    /// A speaker: the one with this id, or the default.
    Speaker(Option<String>),
}

impl AudioOut {
    /// Starts the playout clock and, if asked for, the speaker. A speaker that cannot be
    /// opened is reported and the clock runs without it.
    pub fn start(
        sink: Sink,
        echo: Option<Processor>,
        app: mpsc::Sender<RoomEvent>,
    ) -> (Self, Option<DeviceError>) {
        let shared = Arc::new(Shared {
            peers: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let (speaker, error) = match sink {
            Sink::None => (None, None),
            Sink::Speaker(id) => match Speaker::open(id.as_deref()) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            },
        };
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("hearth-playout".into())
            .spawn(move || playout(&thread_shared, speaker, echo, &app));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start audio playout");
        }
        (Self { shared }, error)
    }

    /// A packet from `peer`.
    pub fn push(&self, peer: &PeerId, timestamp: u32, payload: Bytes) {
        let now = Instant::now();
        let Ok(mut peers) = self.shared.peers.lock() else {
            return;
        };
        if !peers.contains_key(peer) {
            match opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono) {
                Ok(decoder) => {
                    peers.insert(
                        peer.clone(),
                        PeerAudio {
                            jitter: JitterBuffer::new(),
                            decoder,
                            level_sum: 0.0,
                            level_n: 0,
                            last_report: now,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "no Opus decoder");
                    return;
                }
            }
        }
        if let Some(p) = peers.get_mut(peer) {
            p.jitter.push(timestamp, payload, now);
        }
    }

    /// Forget a peer (their call ended).
    pub fn remove(&self, peer: &PeerId) {
        if let Ok(mut peers) = self.shared.peers.lock() {
            peers.remove(peer);
        }
    }

    pub fn stats(&self, peer: &PeerId) -> Option<PeerAudioStats> {
        let peers = self.shared.peers.lock().ok()?;
        peers.get(peer).map(|p| PeerAudioStats {
            jitter: p.jitter.stats(),
        })
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// One tick of the playout clock.
const TICK: Duration = Duration::from_millis(20);
/// How late a tick may run and the clock still catch up by running the ones it missed at
/// once: the jitter buffer's smallest delay, so such a burst plays at most what the buffer
/// holds. Later than that (the thread was not run, the machine was busy), a burst would play
/// the buffer out, then conceal frames whose packets are on their way, and throw those packets
/// away as late when they come: the listener would lose the stall twice. Such a clock starts
/// again from now instead, and the jitter buffer drops the extra delay it then holds.
const MAX_BEHIND: Duration = Duration::from_millis(40);

/// When each 20 ms of playout is due.
struct Clock {
    /// When the tick that ran last was due.
    due: Instant,
}

impl Clock {
    /// A clock whose first tick is due at `now`.
    fn new(now: Instant) -> Self {
        Self { due: now }
    }

    /// When the next tick is due, given that the last one has just run at `now`.
    fn next(&mut self, now: Instant) -> Instant {
        if now > self.due + MAX_BEHIND {
            tracing::debug!(
                behind_ms = (now - self.due).as_millis() as u64,
                "the playout clock stalled; starting it again"
            );
            self.due = now;
        }
        self.due += TICK;
        self.due
    }
}

fn playout(
    shared: &Shared,
    speaker: Option<Speaker>,
    mut echo: Option<Processor>,
    app: &mpsc::Sender<RoomEvent>,
) {
    let mut clock = Clock::new(Instant::now());
    let mut pcm = vec![0i16; FRAME_SAMPLES * 6];
    let mut mix = vec![0f32; FRAME_SAMPLES];
    let mut levels = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        mix.fill(0.0);
        levels.clear();
        if let Ok(mut peers) = shared.peers.lock() {
            for (peer, p) in peers.iter_mut() {
                let n = match p.jitter.pop() {
                    Playout::Packet(data) => p.decoder.decode(&data, &mut pcm, false),
                    Playout::Fec(next) => p.decoder.decode(&next, &mut pcm[..FRAME_SAMPLES], true),
                    Playout::Conceal => p.decoder.decode(&[], &mut pcm[..FRAME_SAMPLES], false),
                    Playout::Silence => Ok(0),
                };
                let n = match n {
                    Ok(n) => n.min(FRAME_SAMPLES),
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable audio");
                        0
                    }
                };
                for (m, s) in mix.iter_mut().zip(&pcm[..n]) {
                    *m += f32::from(*s) / 32768.0;
                }
                let level = f64::from(tone::rms(&pcm[..n]));
                p.level_sum += level * level;
                p.level_n += 1;
                if p.last_report.elapsed() >= LEVEL_INTERVAL {
                    levels.push((
                        peer.clone(),
                        (p.level_sum / f64::from(p.level_n)).sqrt() as f32,
                    ));
                    p.level_sum = 0.0;
                    p.level_n = 0;
                    p.last_report = Instant::now();
                }
            }
        }
        for (peer, level) in levels.drain(..) {
            let _ = app.try_send(RoomEvent::RemoteAudioLevel { peer, level });
        }
        for m in &mut mix {
            *m = m.clamp(-1.0, 1.0);
        }
        if let Some(p) = echo.as_mut() {
            apm::render(p, &mix);
        }
        if let Some(s) = &speaker {
            s.play(&mix);
        }
        sleep_until(clock.next(Instant::now()));
    }
}

/// A `cpal` output stream fed from a short queue.
pub(crate) struct Speaker {
    queue: Arc<Mutex<VecDeque<f32>>>,
    resampler: Mutex<Resampler>,
    _stream: cpal::Stream,
}

impl Speaker {
    pub(crate) fn open(id: Option<&str>) -> Result<Self, DeviceError> {
        use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
        let unusable = |name: &str| DeviceError {
            kind: DeviceKind::Speaker,
            message: format!(
                "The speaker \"{name}\" could not be opened. The call continues, but you will not hear it."
            ),
        };
        let host = cpal::default_host();
        let device = match id {
            Some(id) => super::devices::speakers()
                .into_iter()
                .find(|(d, _)| d.id == id)
                .map(|(_, d)| d),
            None => host.default_output_device(),
        }
        .ok_or_else(|| DeviceError {
            kind: DeviceKind::Speaker,
            message: "No speaker was found. The call continues, but you will not hear it.".into(),
        })?;
        let name = device.name().unwrap_or_else(|_| "speaker".into());
        let config = device
            .default_output_config()
            .map_err(|_| unusable(&name))?;
        let channels = usize::from(config.channels().max(1));
        let rate = config.sample_rate().0;
        let queue = Arc::new(Mutex::new(VecDeque::<f32>::with_capacity(MAX_QUEUED * 2)));
        let feed = queue.clone();
        let stream = device
            .build_output_stream(
                &config.config(),
                move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    let Ok(mut q) = feed.lock() else { return };
                    for frame in out.chunks_mut(channels) {
                        let s = q.pop_front().unwrap_or(0.0);
                        frame.fill(s);
                    }
                },
                |e| tracing::warn!(error = %e, "speaker error"),
                None,
            )
            .map_err(|_| unusable(&name))?;
        stream.play().map_err(|_| unusable(&name))?;
        Ok(Self {
            queue,
            resampler: Mutex::new(Resampler::new(SAMPLE_RATE, rate)),
            _stream: stream,
        })
    }

    fn play(&self, mix: &[f32]) {
        let samples = match self.resampler.lock() {
            Ok(mut r) => r.process(mix),
            Err(_) => return,
        };
        if let Ok(mut q) = self.queue.lock() {
            q.extend(samples);
            while q.len() > MAX_QUEUED {
                q.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_catches_up_a_little_and_starts_again_after_a_stall() {
        let t0 = Instant::now();
        let mut clock = Clock::new(t0);
        assert_eq!(clock.next(t0), t0 + TICK);
        // The second tick runs 35 ms late, within the limit: the third is due at once, the
        // fourth on the old schedule.
        let late = t0 + TICK + Duration::from_millis(35);
        assert_eq!(clock.next(late), t0 + TICK * 2);
        assert_eq!(clock.next(late), t0 + TICK * 3);
        // The fourth runs 200 ms late: the clock starts again from then, with no burst.
        let stalled = t0 + TICK * 3 + Duration::from_millis(200);
        assert_eq!(clock.next(stalled), stalled + TICK);
        assert_eq!(clock.next(stalled + TICK), stalled + TICK * 2);
    }
}
