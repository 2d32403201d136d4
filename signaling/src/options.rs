//! Server configuration: plain structs with defaults; `main.rs` fills them from flags and env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ice::IceOptions;
use crate::secret::Secret;

/// The address `serve` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7800";

/// Everything a [`crate::Server`] needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The join-token signing secret.
    pub secret: Secret,
    /// STUN and TURN handed to clients.
    pub ice: IceOptions,
    /// Limits and timeouts.
    pub limits: Limits,
    /// The database file for invitations, tablets and the audit trail; `None` keeps them in
    /// memory (tests).
    pub store_path: Option<PathBuf>,
    /// The address people reach this server at (`https://calls.example.org`), for invitation
    /// links; `None` uses `http://` and the listen address.
    pub public_url: Option<String>,
    /// The built UI (`ui/dist`) to serve as the browser mode at invitation links; `None`
    /// answers those links with a sentence.
    pub web_root: Option<PathBuf>,
    /// NATS server(s) to share rooms through with other nodes (`nats://host:4222`, several
    /// separated by commas); `None` keeps rooms in this process.
    pub nats_url: Option<String>,
    /// This node's id among the nodes sharing rooms; `None` picks a random one.
    pub node_id: Option<String>,
    /// Load balancers whose `X-Forwarded-For` names the client, besides loopback (always
    /// trusted: a proxy on the same machine, as the shipped nginx and compose files have it).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ServerOptions {
    /// The client's address for a request from `peer`: what a trusted proxy says in
    /// `X-Forwarded-For` (its last entry, the one the proxy itself wrote), else `peer`.
    pub fn client_address(
        &self,
        peer: std::net::IpAddr,
        forwarded_for: Option<&str>,
    ) -> std::net::IpAddr {
        let trusted =
            peer.is_loopback() || self.trusted_proxies.iter().any(|net| net.contains(&peer));
        forwarded_for
            .filter(|_| trusted)
            .and_then(|list| list.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or(peer)
    }
}

impl Default for ServerOptions {
    /// Loopback, a random port, a fresh random secret, no STUN/TURN, default limits, records
    /// in memory.
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret: Secret::generate(),
            ice: IceOptions::default(),
            limits: Limits::default(),
            store_path: None,
            public_url: None,
            web_root: None,
            nats_url: None,
            node_id: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Limits that keep one client from hurting others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// People in a consult's call: admitting one more from the waiting room gets `room_full`.
    /// (Calls in family rooms are held to four by the clients, which know who is in a call.)
    pub max_participants: usize,
    /// People present in one room at once: a resident's tablet, the relatives whose apps are
    /// open, a clinician doing rounds. One more gets `room_full` at `hello`.
    pub max_members: usize,
    /// Time from socket open to `hello`.
    pub hello_timeout: Duration,
    /// Largest accepted text frame, bytes.
    pub max_frame_bytes: usize,
    /// Sustained messages per second per connection.
    pub rate_per_second: u32,
    /// Messages a connection may send at once before the rate applies.
    pub rate_burst: u32,
    /// Messages queued for one client before it counts as too slow and is disconnected.
    pub outbound_queue: usize,
    /// Longest time one write to a client may take before it is disconnected.
    pub write_timeout: Duration,
    /// How often the server pings each client.
    pub ping_interval: Duration,
    /// A client silent this long (no frame, no pong) is disconnected.
    pub idle_timeout: Duration,
    /// How long a dropped patient's place in the waiting room is held.
    pub waiting_grace: Duration,
    /// How long a session whose connection dropped can be resumed (`hello.resume`).
    pub resume_grace: Duration,
    /// Messages kept per session to replay after a resume; a larger gap gets a snapshot.
    pub replay_buffer: usize,
    /// How long a draining node waits for its clients to reconnect elsewhere before it closes
    /// their connections.
    pub shutdown_grace: Duration,
    /// How long staff wait for a tablet to answer a remote check.
    pub check_timeout: Duration,
    /// Invitation codes tried per second, across all clients (guessing stays hopeless).
    pub redeem_per_second: u32,
    /// Invitation codes tried per second from one address (one client cannot use up the
    /// server-wide allowance for everyone else).
    pub redeem_per_address: u32,
}

impl Limits {
    /// How many people each room holds.
    pub fn capacity(&self) -> crate::room::Capacity {
        crate::room::Capacity {
            members: self.max_members,
            call: self.max_participants,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_participants: 4,
            max_members: 16,
            hello_timeout: Duration::from_secs(5),
            max_frame_bytes: hearth_proto::MAX_FRAME_BYTES,
            rate_per_second: 50,
            rate_burst: 50,
            outbound_queue: 128,
            write_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(40),
            waiting_grace: Duration::from_secs(120),
            resume_grace: Duration::from_secs(30),
            replay_buffer: 256,
            shutdown_grace: Duration::from_secs(10),
            check_timeout: Duration::from_secs(30),
            redeem_per_second: 100,
            redeem_per_address: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_no_one_else_does() {
        let options = ServerOptions {
            trusted_proxies: vec!["10.0.0.0/24".parse().unwrap()],
            ..ServerOptions::default()
        };
        // Loopback and the configured network are proxies: the last entry is the client.
        let said = Some("6.6.6.6, 198.51.100.9");
        assert_eq!(
            options.client_address(ip("127.0.0.1"), said),
            ip("198.51.100.9")
        );
        assert_eq!(
            options.client_address(ip("10.0.0.5"), said),
            ip("198.51.100.9")
        );
        // Anyone else's header is ignored, as is one that is not an address.
        assert_eq!(
            options.client_address(ip("192.0.2.1"), said),
            ip("192.0.2.1")
        );
        assert_eq!(
            options.client_address(ip("127.0.0.1"), Some("nonsense")),
            ip("127.0.0.1")
        );
        assert_eq!(
            options.client_address(ip("127.0.0.1"), None),
            ip("127.0.0.1")
        );
    }
}
