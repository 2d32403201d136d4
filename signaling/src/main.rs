//! `hearth-signaling`: run the signaling server, or mint a join token with its secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hearth_proto::Role;
use signaling::ice::{IceOptions, TurnOptions};
use signaling::secret::Secret;
use signaling::token::TokenKeys;
use signaling::{Limits, Server, ServerOptions};

// mimalloc (its v2 line) in place of glibc's allocator: in the saturated relay with 19,000
// connections it carried 8% more messages per CPU-second at the same idle memory; its v3 line
// carried 14% more but held 10% more per idle connection, and jemalloc 6% more
// (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc.h: the `-sys`
/// crate does not name it), and the delay mimalloc starts with, ms.
const PURGE_DELAY: std::ffi::c_int = 15;
const PURGE_DELAY_DEFAULT: std::ffi::c_long = 10;

/// Has mimalloc give memory it no longer uses back to the system when it is freed, rather than
/// 10 ms later. Its delay is not a timer: it is looked at only when the thread next allocates,
/// so a server that goes quiet after traffic kept all the memory it had used for it (19,000
/// connections held 12.7-14.2 KiB each 35 s after a burst, against 5.5-5.8 KiB with this).
/// It costs the saturated relay about 2% (page faults when freed pages are used again), which
/// leaving out transparent huge pages (`no_thp`, Cargo.toml) more than wins back
/// (docs/BENCHMARKS.md). `MIMALLOC_PURGE_DELAY` in the environment still decides, when set.
#[allow(unsafe_code)]
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: both calls only read or write one entry of mimalloc's option table, with an
    // option number from mimalloc.h; they are made before the runtime starts any thread, as
    // `mi_option_set` requires (it is not thread safe). The check guards against a mimalloc
    // whose options are numbered differently: then nothing is set.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "hearth-signaling",
    version,
    about = "Hearth's signaling server"
)]
struct Cli {
    /// Where the dev secret is kept (default: the user's data dir, e.g. ~/.local/share/hearth).
    #[arg(long, env = "HEARTH_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Dev mode: without HEARTH_SECRET, generate a secret once and keep it in the data dir.
    #[arg(long, env = "HEARTH_DEV", global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the secret comes from HEARTH_SECRET, or the data dir with --dev).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "HEARTH_LISTEN", default_value = signaling::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// STUN URLs handed to clients (comma separated or repeated).
        #[arg(long = "stun-url", env = "HEARTH_STUN_URLS", value_delimiter = ',')]
        stun_urls: Vec<String>,
        /// TURN URLs handed to clients with credentials; needs HEARTH_TURN_SECRET.
        #[arg(long = "turn-url", env = "HEARTH_TURN_URLS", value_delimiter = ',')]
        turn_urls: Vec<String>,
        /// How long TURN credentials stay valid.
        #[arg(long, env = "HEARTH_TURN_TTL", default_value = "6h", value_parser = humantime::parse_duration)]
        turn_ttl: Duration,
        /// People in a consult's call (admitting more from the waiting room is refused).
        #[arg(long, env = "HEARTH_MAX_PARTICIPANTS", default_value_t = 4)]
        max_participants: usize,
        /// People present in one room at once (a tablet and the relatives' open apps).
        #[arg(long, env = "HEARTH_MAX_MEMBERS", default_value_t = 16)]
        max_members: usize,
        /// Load balancers (addresses or networks, like 10.0.0.0/24) whose X-Forwarded-For
        /// names the client; loopback is always trusted.
        #[arg(
            long = "trusted-proxy",
            env = "HEARTH_TRUSTED_PROXIES",
            value_delimiter = ','
        )]
        trusted_proxies: Vec<ipnet::IpNet>,
        /// The database file for invitations, tablets' rules and the audit trail (default:
        /// hearth.redb in the data dir); `memory` keeps them in memory only.
        #[arg(long, env = "HEARTH_STORE")]
        store: Option<String>,
        /// The address people reach this server at, for invitation links
        /// (e.g. https://calls.example.org); default: http:// and the listen address.
        #[arg(long, env = "HEARTH_PUBLIC_URL")]
        public_url: Option<String>,
        /// The built UI (ui/dist) to serve as the browser mode at invitation links.
        #[arg(long, env = "HEARTH_WEB_ROOT")]
        web_root: Option<PathBuf>,
        /// Share rooms with other server processes through NATS (JetStream enabled), e.g.
        /// nats://127.0.0.1:4222; without it, rooms live in this process only.
        #[arg(long, env = "HEARTH_NATS_URL")]
        nats_url: Option<String>,
        /// This process's name among the nodes sharing rooms (default: random).
        #[arg(long, env = "HEARTH_NODE_ID")]
        node_id: Option<String>,
        /// How long a client whose connection dropped may resume its session.
        #[arg(long, env = "HEARTH_RESUME_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
        resume_grace: Duration,
        /// How long a stopping server (SIGTERM) waits for its clients to reconnect elsewhere.
        #[arg(long, env = "HEARTH_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
        drain_timeout: Duration,
    },
    /// Print a signed join token.
    Mint {
        /// The room.
        #[arg(long)]
        room: String,
        /// resident, family, clinician, patient, staff or guest.
        #[arg(long)]
        role: Role,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Stable subject (a device or person id); random when not given.
        #[arg(long)]
        sub: Option<String>,
        /// How long the token is valid, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

fn secret(cli: &Cli) -> anyhow::Result<Secret> {
    if let Ok(text) = std::env::var("HEARTH_SECRET") {
        return Secret::new(&text).context("HEARTH_SECRET is not usable");
    }
    if !cli.dev {
        bail!(
            "HEARTH_SECRET is not set. Set it to at least 32 random characters, \
             or pass --dev to generate one in the data dir."
        );
    }
    let (secret, path, generated) = Secret::load_or_generate(&data_dir(cli)?)?;
    if generated {
        eprintln!(
            "dev mode: generated a new secret and wrote it to {}",
            path.display()
        );
    } else {
        eprintln!("dev mode: using the secret in {}", path.display());
    }
    Ok(secret)
}

fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(dirs::data_dir()
            .context("no data dir is known for this user; pass --data-dir")?
            .join("hearth")),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() -> anyhow::Result<()> {
    purge_freed_memory_at_once();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Mint {
            room,
            role,
            name,
            sub,
            ttl,
        } => {
            let keys = TokenKeys::new(&secret(&cli)?);
            let token = keys.mint(room, *role, name, sub.as_deref(), *ttl, now_unix())?;
            println!("{token}");
            Ok(())
        }
        Command::Serve {
            listen,
            stun_urls,
            turn_urls,
            turn_ttl,
            max_participants,
            max_members,
            trusted_proxies,
            store,
            public_url,
            web_root,
            nats_url,
            node_id,
            resume_grace,
            drain_timeout,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
                tracing::warn!(error = %e, "could not raise the open-file limit");
            }
            let turn = if turn_urls.is_empty() {
                None
            } else {
                let text = std::env::var("HEARTH_TURN_SECRET")
                    .context("--turn-url needs HEARTH_TURN_SECRET (coturn's static-auth-secret)")?;
                Some(TurnOptions {
                    urls: turn_urls.clone(),
                    secret: Secret::new(&text).context("HEARTH_TURN_SECRET is not usable")?,
                    ttl: *turn_ttl,
                })
            };
            if *max_participants < 2 {
                bail!("--max-participants must be at least 2");
            }
            if max_members < max_participants {
                bail!("--max-members must be at least --max-participants");
            }
            let options = ServerOptions {
                listen: *listen,
                secret: secret(&cli)?,
                ice: IceOptions {
                    stun_urls: stun_urls.clone(),
                    turn,
                },
                limits: Limits {
                    max_participants: *max_participants,
                    max_members: *max_members,
                    resume_grace: *resume_grace,
                    shutdown_grace: *drain_timeout,
                    ..Limits::default()
                },
                store_path: match store.as_deref() {
                    Some("memory") => None,
                    Some(path) => Some(PathBuf::from(path)),
                    None => Some(data_dir(&cli)?.join("hearth.redb")),
                },
                public_url: public_url.clone(),
                web_root: web_root.clone(),
                nats_url: nats_url.clone(),
                node_id: node_id.clone(),
                trusted_proxies: trusted_proxies.clone(),
            };
            if let Some(root) = web_root
                && !signaling::web::looks_built(root)
            {
                bail!(
                    "--web-root {} holds no built page (index.html and assets/); run `npm run build` in ui/",
                    root.display()
                );
            }
            match &options.store_path {
                Some(path) => eprintln!("hearth-signaling: records kept in {}", path.display()),
                None => eprintln!("hearth-signaling: records kept in memory only"),
            }
            let server = Server::start(options).await?;
            eprintln!("hearth-signaling: WebSocket at {}", server.ws_url());
            if cli.dev {
                eprintln!(
                    "get a token: hearth-signaling --dev mint --room demo --role family --name Ann"
                );
            }
            wait_for_signal().await?;
            server.shutdown().await;
            Ok(())
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
