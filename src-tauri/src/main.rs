//! `hearth`: the desktop app. Flags only; everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Hearth: video calls for care homes, families and clinicians.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Full screen without window chrome (a resident's tablet), restarted after a crash.
    /// Staff's console can also turn kiosk mode on and off.
    #[arg(long)]
    kiosk: bool,
    /// Where settings are kept (default: the platform's app data directory).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Local addresses for call connections (default: every interface).
    #[arg(long = "bind", env = "HEARTH_BIND", value_delimiter = ',')]
    bind: Vec<SocketAddr>,
    /// Camera capture size, WIDTHxHEIGHT (30 frames a second).
    #[arg(long, env = "HEARTH_CAMERA_SIZE", default_value = "640x480", value_parser = parse_size)]
    camera_size: (u32, u32),
    /// Composite the page on the GPU and draw video with WebGL (for machines with a GPU).
    #[arg(long, env = "HEARTH_GPU_COMPOSITING")]
    gpu_compositing: bool,
    /// Decode remote video in the app rather than in the page (WebCodecs); the page falls
    /// back to this by itself when it cannot decode.
    #[arg(long, env = "HEARTH_DECODE_VIDEO_HERE")]
    decode_video_here: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT, e.g. 1280x720"))?;
    let n = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (16..=4096).contains(n))
            .ok_or_else(|| format!("{v:?} is not a size between 16 and 4096"))
    };
    Ok((n(w)?, n(h)?))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !hearth_desktop::supervised() {
        // This process only watches; the app runs in a child, restarted after a crash while
        // it is a kiosk (`--kiosk`, or made one from staff's console while it runs).
        let exe = std::env::current_exe()?;
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let code = hearth_desktop::Supervisor::new().run(&exe, &argv, args.kiosk)?;
        std::process::exit(code);
    }
    hearth_desktop::end_with_supervisor();
    hearth_desktop::run(hearth_desktop::AppOptions {
        data_dir: args.data_dir,
        kiosk: args.kiosk,
        bind_addrs: args.bind,
        camera: (args.camera_size.0, args.camera_size.1, 30),
        gpu_compositing: args.gpu_compositing,
        decode_video_here: args.decode_video_here,
    })
}
