//! The HTTP side: the router (`/v1/ws`, `/healthz`, `/readyz`, `/metrics`) and a [`Server`] that
//! binds it, sweeps held waiting-room places, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::hub::Hub;
use crate::options::ServerOptions;
use crate::token::TokenKeys;
use crate::upgrade;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data store could not be opened.
    #[error("could not open the data store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The backplane (NATS) could not be reached or set up.
    #[error("could not reach the shared state: {0}")]
    Backplane(#[from] crate::backplane::BackplaneError),
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The router, apart from any listener, so tests and other front ends can mount it. Its
/// WebSockets need their connections served by `axum::serve` over tokio's `TcpStream`, as
/// [`Server`] does: the socket is taken back from the upgrade as that type (see
/// `upgrade::socket`).
pub fn app(hub: Arc<Hub>) -> Router {
    let web_root = hub.options.web_root.clone();
    Router::new()
        .route(hearth_proto::WS_PATH, get(ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::api::routes())
        .merge(crate::web::routes(web_root))
        .fallback(crate::api::not_found)
        .with_state(hub)
}

async fn ws(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    if hub.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let tasks = hub.tasks.clone();
    let (response, on_upgrade) = match upgrade::accept(request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    // One task from the handshake to the end. Its future is the handshake's or the
    // connection's, in turn, never both: every idle connection keeps its task's whole future
    // (awaiting the connection inside an `async` block would also keep what the connection
    // took from the upgrade: measured when that was the whole socket, 1,552 bytes in all
    // against 1,200), and a second task for the handshake
    // left each connection a freed hole of its size in the allocator's pages (0.2-0.4 KiB
    // more per idle connection).
    let connection = upgrade::socket(on_upgrade, hub.options.limits.max_frame_bytes)
        .map(move |socket| {
            OptionFuture::from(socket.map(|(io, rx)| crate::connection::run(io, rx, hub)))
        })
        .flatten();
    tokio::spawn(tasks.track_future(connection));
    response
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
        .into_response()
}

/// Connections the kernel queues for accepting (capped by `net.core.somaxconn`). A crowd
/// arrives at once when a node's clients move after it stopped; tokio's default of 128 drops the
/// rest of such a crowd's connection attempts, and each costs its client a 1 s SYN retry.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's and tokio's bind do: a restarted server binds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running signaling server. Dropping it stops it; [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: CancellationToken,
    serve: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `options.listen` and starts serving.
    pub async fn start(options: ServerOptions) -> Result<Server, ServerError> {
        let listener = listen(options.listen).map_err(|source| ServerError::Bind {
            addr: options.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: options.listen,
            source,
        })?;
        let store = Arc::new(crate::store::Store::open(options.store_path.as_deref())?);
        let backplane: Arc<dyn crate::backplane::Backplane> = match &options.nats_url {
            Some(url) => Arc::new(crate::backplane::nats::Nats::connect(url).await?),
            None => Arc::new(crate::backplane::memory::Memory::default()),
        };
        let changes =
            Arc::new(crate::persist::Changes::start(store.clone(), backplane.clone()).await?);
        let (hub, writes, followups) =
            Hub::new(options, store.clone(), backplane, changes.clone())?;
        let _ = hub.listen.set(addr);
        let hub = Arc::new(hub);
        hub.attach();
        tokio::spawn(hub.clone().run_followups(followups));
        let writer = tokio::spawn(crate::persist::run(changes, writes));
        let stop = CancellationToken::new();
        let router = app(hub.clone());
        let graceful = stop.clone();
        let serve = tokio::spawn(async move {
            // Each message is written when it is ready: without TCP_NODELAY a small write
            // behind an unacknowledged one waits for the acknowledgement (Nagle).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            });
            // Peers' addresses reach handlers that limit per client (redeeming codes).
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(graceful.cancelled_owned())
            .await;
            if let Err(e) = served {
                error!(error = %e, "server stopped with an error");
            }
        });
        let keeper = hub.clone();
        let keeper_stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = keeper_stop.cancelled() => break,
                    _ = tick.tick() => keeper.housekeeping().await,
                }
            }
        });
        info!(%addr, node = %hub.node, "signaling server listening");
        Ok(Server {
            addr,
            hub,
            stop,
            serve: Some(serve),
            writer: Some(writer),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL of protocol v1.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, hearth_proto::WS_PATH)
    }

    /// The keys this server checks tokens with, for minting in tests and tools.
    pub fn tokens(&self) -> &TokenKeys {
        &self.hub.keys
    }

    /// Connections currently in a room or waiting.
    pub fn peer_count(&self) -> usize {
        self.hub.peer_count()
    }

    /// Drains: fails `/readyz` and refuses new connections, tells every client to reconnect
    /// (elsewhere, through the load balancer) after a spread of delays with its session kept
    /// resumable, waits until they have gone or the shutdown grace is over, then stops.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        self.hub.shutdown.cancel();
        self.hub.drain().await;
        let grace = self.hub.options.limits.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        while self.hub.conn_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.hub.conn_count() > 0 {
            info!(
                connections = self.hub.conn_count(),
                "clients still connected after the shutdown grace; closing them"
            );
        }
        self.hub.stop_connections();
        self.stop.cancel();
        self.hub.tasks.close();
        if tokio::time::timeout(Duration::from_secs(3), self.hub.tasks.wait())
            .await
            .is_err()
        {
            info!("connections did not close in time");
        }
        self.hub.end_all().await;
        self.hub.backplane.close().await;
        if let Some(serve) = self.serve.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), serve).await;
        }
        // Everything the hub queued for the store (the last departures' audit records) is saved
        // before the process may exit.
        if tokio::time::timeout(Duration::from_secs(5), self.hub.flush())
            .await
            .is_err()
        {
            error!("the store did not finish saving within 5 s");
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.hub.shutdown.cancel();
        self.hub.stop_connections();
        self.stop.cancel();
        if let Some(serve) = self.serve.take() {
            serve.abort();
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}
