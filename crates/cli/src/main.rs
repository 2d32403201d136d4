//! `hearth-cli`: a call peer on the command line. Joins a room with a token, then calls,
//! answers or auto-answers with the synthetic test pattern and tone (or no media), prints what
//! happens, and can write the call's statistics as JSON. Tests, benchmarks and care-home
//! technicians use it.
//!
//! Exit codes: 0 the command did what it was asked; 2 bad arguments; 3 the server could not
//! be reached; 4 the server refused the token; 5 the call did not happen (declined, busy, no
//! answer, failed); 6 the call happened but no video or audio arrived when `--expect-media`
//! asked for it; 1 anything else.

mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hearth_engine::{
    AudioInput, AudioOutput, CallEndReason, EngineError, PeerId, Room, RoomEvent, RoomOptions,
    VideoCodec, VideoInput,
};
use tokio::sync::mpsc;

use report::Report;

#[derive(Parser, Debug)]
#[command(
    name = "hearth-cli",
    version,
    about = "A Hearth call peer for the command line"
)]
struct Cli {
    /// The signaling server's WebSocket URL.
    #[arg(
        long,
        env = "HEARTH_SERVER",
        default_value = "ws://127.0.0.1:7800/v1/ws"
    )]
    server: String,
    /// Join token (from `hearth-signaling mint` or an invitation).
    #[arg(long, env = "HEARTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// What to send as video.
    #[arg(long, value_enum, default_value_t = VideoArg::Pattern)]
    video: VideoArg,
    /// With `--video camera`: which camera (an id from `hearth-cli devices`); default the first.
    #[arg(long)]
    camera: Option<String>,
    /// With `--audio mic`: which microphone (an id from `hearth-cli devices`); default the
    /// system's default.
    #[arg(long)]
    mic: Option<String>,
    /// Video size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (u32, u32),
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// What to send as audio.
    #[arg(long, value_enum, default_value_t = AudioArg::Tone)]
    audio: AudioArg,
    /// Play received audio on a speaker (the default one, or `--speaker`).
    #[arg(long)]
    play: bool,
    /// With `--play`: which speaker (an id from `hearth-cli devices`).
    #[arg(long)]
    speaker: Option<String>,
    /// Turn off echo cancellation, noise suppression and automatic gain.
    #[arg(long)]
    no_audio_processing: bool,
    /// Video codecs to send, most preferred first.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [CodecArg::H264, CodecArg::Vp8])]
    codecs: Vec<CodecArg>,
    /// Local address(es) to gather ICE candidates on (`0.0.0.0:0`: every interface).
    #[arg(long = "bind", default_value = "0.0.0.0:0")]
    bind: Vec<SocketAddr>,
    /// Accept other peers' mDNS (.local) candidates.
    #[arg(long)]
    mdns: bool,
    /// Write the call's statistics here as JSON when the command ends.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// How long a call lasts before this side hangs up (default: until the other side does).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Exit with code 6 unless video and audio arrived from every peer in the call.
    #[arg(long)]
    expect_media: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stay in the room and print what happens; answer nothing.
    Join,
    /// Call someone in the room, by id or display name (or the first other person with
    /// `--first`).
    Call {
        /// Peer id or display name.
        who: Option<String>,
        /// Call the first other person in the room, waiting for one to join.
        #[arg(long)]
        first: bool,
    },
    /// Wait for one incoming call, answer it, and stay until it ends.
    Answer,
    /// Answer every incoming call, for ever (a demo or test peer).
    AutoAnswer,
    /// As a clinician: admit the first patient who waits, call them, and stay until the
    /// consult ends (or `--duration` passes).
    Consult,
    /// List cameras, microphones and speakers with their ids, as JSON, and exit.
    Devices,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum VideoArg {
    /// The moving test pattern with frame numbers in its pixels.
    Pattern,
    /// A camera.
    Camera,
    /// No video: receive only.
    None,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum AudioArg {
    /// A 440 Hz beep once a second.
    Tone,
    /// A microphone.
    Mic,
    /// No audio.
    None,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum CodecArg {
    H264,
    Vp8,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or("expected WIDTHxHEIGHT, e.g. 640x480")?;
    let w: u32 = w.parse().map_err(|_| "width is not a number")?;
    let h: u32 = h.parse().map_err(|_| "height is not a number")?;
    if !(16..=3840).contains(&w) || !(16..=2160).contains(&h) {
        return Err("size must be between 16x16 and 3840x2160".into());
    }
    Ok((w, h))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "expected a number of seconds".to_owned())
}

/// Why the command failed, mapped to the exit codes in the module docs.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Unreachable(String),
    Refused(String),
    NoCall(String),
    NoMedia(String),
    Other(anyhow::Error),
}

impl Failure {
    fn engine_stopped() -> Self {
        Self::Other(anyhow::anyhow!("the engine stopped"))
    }

    fn code(&self) -> u8 {
        match self {
            Self::Other(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable(_) => 3,
            Self::Refused(_) => 4,
            Self::NoCall(_) => 5,
            Self::NoMedia(_) => 6,
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unreachable { .. } => Self::Unreachable(e.to_string()),
            EngineError::Rejected { .. } => Self::Refused(format!("{} ({})", e, e.code())),
            other => Self::Other(other.into()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,hearth_cli=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            match &f {
                Failure::Usage(m)
                | Failure::Unreachable(m)
                | Failure::Refused(m)
                | Failure::NoCall(m)
                | Failure::NoMedia(m) => eprintln!("hearth-cli: {m}"),
                Failure::Other(e) => eprintln!("hearth-cli: {e:#}"),
            }
            ExitCode::from(f.code())
        }
    }
}

fn options(cli: &Cli) -> RoomOptions {
    RoomOptions {
        video: match cli.video {
            VideoArg::Pattern => VideoInput::Synthetic {
                width: cli.size.0,
                height: cli.size.1,
                fps: cli.fps.clamp(1, 60),
            },
            VideoArg::Camera => VideoInput::Camera {
                id: cli.camera.clone(),
                width: cli.size.0,
                height: cli.size.1,
                fps: cli.fps.clamp(1, 60),
            },
            VideoArg::None => VideoInput::None,
        },
        audio: match cli.audio {
            AudioArg::Tone => AudioInput::Tone,
            AudioArg::Mic => AudioInput::Microphone {
                id: cli.mic.clone(),
            },
            AudioArg::None => AudioInput::None,
        },
        video_codecs: cli
            .codecs
            .iter()
            .map(|c| match c {
                CodecArg::H264 => VideoCodec::H264,
                CodecArg::Vp8 => VideoCodec::Vp8,
            })
            .collect(),
        audio_output: if cli.play {
            AudioOutput::Speaker {
                id: cli.speaker.clone(),
            }
        } else {
            AudioOutput::None
        },
        audio_processing: !cli.no_audio_processing,
        bind_addrs: cli.bind.clone(),
        mdns: cli.mdns,
        ..RoomOptions::default()
    }
}

/// Prints one line per event that matters to a person watching.
fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

struct Session {
    room: Room,
    events: mpsc::Receiver<RoomEvent>,
    names: std::collections::HashMap<PeerId, String>,
    report: Report,
}

impl Session {
    fn name(&self, peer: &PeerId) -> String {
        self.names
            .get(peer)
            .cloned()
            .unwrap_or_else(|| peer.to_string())
    }

    /// Prints what an event means to a person watching and records it for the report.
    fn note(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Joined {
                me, room, peers, ..
            } => {
                for p in peers {
                    self.names.insert(p.peer.clone(), p.name.clone());
                }
                say(format!(
                    "joined room {room} as {me}; {} other(s) here",
                    peers.len()
                ));
            }
            RoomEvent::Waiting { position } => {
                say(format!("in the waiting room, place {position}"))
            }
            RoomEvent::Lobby(waiting) => say(format!(
                "waiting room: {}",
                if waiting.is_empty() {
                    "nobody".to_owned()
                } else {
                    waiting
                        .iter()
                        .map(|w| w.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
            RoomEvent::PeerJoined(p) => {
                self.names.insert(p.peer.clone(), p.name.clone());
                say(format!("{} ({}) joined", p.name, p.peer));
            }
            RoomEvent::PeerLeft(p) => say(format!("{} left", self.name(p))),
            RoomEvent::IncomingCall { peer, name } => say(format!("{name} ({peer}) is calling")),
            RoomEvent::Ringing { peer } => say(format!("ringing at {}", self.name(peer))),
            RoomEvent::CallConnected { peer } => {
                self.report.connected(peer);
                say(format!("in a call with {}", self.name(peer)));
            }
            RoomEvent::CallEnded { peer, reason } => say(format!(
                "call with {} ended: {}",
                self.name(peer),
                reason.code()
            )),
            RoomEvent::Quality { peer, quality } => {
                say(format!("connection to {}: {quality:?}", self.name(peer)))
            }
            RoomEvent::DeviceError { device, message } => say(format!("{device:?}: {message}")),
            RoomEvent::DevicesChanged(list) => say(format!(
                "devices changed: {}",
                list.iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            RoomEvent::VideoPaused { peer, paused } => say(if *paused {
                format!(
                    "the connection to {} is too weak for video; sending audio only",
                    self.name(peer)
                )
            } else {
                format!("video to {} is back", self.name(peer))
            }),
            RoomEvent::RemoteVideoPaused { peer, paused, .. } => say(if *paused {
                format!(
                    "{}'s connection is too weak for video; you hear them but cannot see them",
                    self.name(peer)
                )
            } else {
                format!("{}'s video is back", self.name(peer))
            }),
            RoomEvent::Disconnected { reason, .. } => say(reason),
            RoomEvent::RemoteVideo(f) => self.report.video(f),
            RoomEvent::RemoteAudioLevel { peer, level } => self.report.audio(peer, *level),
            RoomEvent::Stats(s) => self.report.stats(s),
            _ => {}
        }
    }

    async fn next(&mut self) -> Option<RoomEvent> {
        let e = self.events.recv().await?;
        self.note(&e);
        Some(e)
    }

    /// Waits until the call just placed or answered is connected.
    async fn wait_connected(&mut self) -> Result<(), Failure> {
        loop {
            match self.next().await {
                Some(RoomEvent::CallConnected { .. }) => return Ok(()),
                Some(RoomEvent::CallEnded { reason, .. }) => {
                    return Err(Failure::NoCall(format!(
                        "the call did not happen: {}",
                        reason.code()
                    )));
                }
                None => return Err(Failure::engine_stopped()),
                _ => {}
            }
        }
    }

    /// Runs a connected call until it ends or `duration` passes; hangs up in the second case.
    async fn stay_in_call(&mut self, duration: Option<Duration>) -> Result<(), Failure> {
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut in_call = 1usize;
        loop {
            let event = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.next()).await {
                    Ok(e) => e,
                    Err(_) => {
                        self.report.final_stats(self.room.stats().await.ok());
                        self.room.hang_up_all().await?;
                        return Ok(());
                    }
                },
                None => self.next().await,
            };
            match event {
                None => return Err(Failure::engine_stopped()),
                Some(RoomEvent::CallConnected { .. }) => in_call += 1,
                Some(RoomEvent::CallEnded { reason, .. }) => {
                    in_call = in_call.saturating_sub(1);
                    if in_call == 0 {
                        return match reason {
                            CallEndReason::HungUp | CallEndReason::RemoteHungUp => Ok(()),
                            other => {
                                Err(Failure::NoCall(format!("the call ended: {}", other.code())))
                            }
                        };
                    }
                }
                Some(RoomEvent::Disconnected { reason, .. }) => {
                    return Err(Failure::Unreachable(reason));
                }
                _ => {}
            }
        }
    }
}

/// Admits the first connected patient, calls them once they are in, and stays in the consult.
async fn consult(s: &mut Session, duration: Option<Duration>) -> Result<(), Failure> {
    let patient = loop {
        match s.next().await {
            Some(RoomEvent::Lobby(waiting)) => {
                if let Some(w) = waiting.iter().find(|w| w.connected) {
                    say(format!("admitting {}", w.name));
                    s.room.admit(&w.peer).await?;
                    break w.peer.clone();
                }
            }
            None => return Err(Failure::engine_stopped()),
            _ => {}
        }
    };
    loop {
        match s.next().await {
            Some(RoomEvent::PeerJoined(p)) if p.peer == patient => break,
            None => return Err(Failure::engine_stopped()),
            _ => {}
        }
    }
    s.room.call(&patient).await?;
    s.wait_connected().await?;
    s.stay_in_call(duration).await
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Devices = cli.command {
        let list = hearth_engine::media::devices::list();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).context("device list")?
        );
        return Ok(());
    }
    let Some(token) = cli.token.as_deref() else {
        return Err(Failure::Usage(
            "a join token is needed (--token or HEARTH_TOKEN)".into(),
        ));
    };
    let (room, events) = Room::connect(&cli.server, token, options(&cli)).await?;
    let mut s = Session {
        room,
        events,
        names: Default::default(),
        report: Report::new(),
    };
    let result = match &cli.command {
        Command::Join => loop {
            if s.next().await.is_none() {
                break Ok(());
            }
        },
        Command::Call { who, first } => call(&mut s, who.as_deref(), *first, cli.duration).await,
        Command::Answer => answer(&mut s, cli.duration, false).await,
        Command::AutoAnswer => answer(&mut s, cli.duration, true).await,
        Command::Consult => consult(&mut s, cli.duration).await,
        Command::Devices => Ok(()),
    };
    s.room.leave().await;
    if let Some(path) = &cli.stats_json {
        let json = serde_json::to_string_pretty(&s.report.summary()).context("statistics")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    result?;
    if cli.expect_media {
        s.report.check_media().map_err(Failure::NoMedia)?;
    }
    Ok(())
}

async fn call(
    s: &mut Session,
    who: Option<&str>,
    first: bool,
    duration: Option<Duration>,
) -> Result<(), Failure> {
    // Find the peer: by id or name among those present, waiting for them to join.
    let target = loop {
        let found = s.names.iter().find_map(|(id, name)| match who {
            Some(w) if id.as_str() == w || name == w => Some(id.clone()),
            None if first => Some(id.clone()),
            _ => None,
        });
        if let Some(t) = found {
            break t;
        }
        if who.is_none() && !first {
            return Err(Failure::Other(anyhow::anyhow!(
                "say who to call, or --first"
            )));
        }
        if s.next().await.is_none() {
            return Err(Failure::engine_stopped());
        }
    };
    s.report.started(Instant::now());
    s.room.call(&target).await?;
    s.wait_connected().await?;
    s.stay_in_call(duration).await
}

async fn answer(s: &mut Session, duration: Option<Duration>, forever: bool) -> Result<(), Failure> {
    loop {
        let peer = loop {
            match s.next().await {
                Some(RoomEvent::IncomingCall { peer, .. }) => break peer,
                None => return Ok(()),
                _ => {}
            }
        };
        s.report.started(Instant::now());
        s.room.answer(&peer).await?;
        let r = match s.wait_connected().await {
            Ok(()) => s.stay_in_call(duration).await,
            Err(e) => Err(e),
        };
        if !forever {
            return r;
        }
        if let Err(f) = r {
            tracing::warn!(code = f.code(), "call ended badly; waiting for the next");
        }
    }
}
