//! Hearth's signaling server: rooms, a consult waiting room, signed join tokens and TURN
//! credentials over one WebSocket protocol (`docs/protocol.md`), on one node with in-memory state.
//!
//! ```no_run
//! # async fn run() -> Result<(), signaling::ServerError> {
//! let server = signaling::Server::start(signaling::ServerOptions::default()).await?;
//! println!("ws://{}/v1/ws", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod backplane;
mod connection;
mod frames;
mod hub;
pub mod ice;
mod keylock;
mod mailbox;
pub mod metrics;
mod options;
mod outlet;
mod persist;
mod replica;
mod resume;
pub mod room;
pub mod secret;
mod server;
pub mod store;
pub mod token;
mod upgrade;
pub mod web;

pub use options::{DEFAULT_LISTEN, Limits, ServerOptions};
pub use server::{Server, ServerError, app};
