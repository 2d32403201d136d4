//! The `ice_servers` a client gets in `welcome`: STUN URLs as configured, and TURN URLs with
//! short-lived credentials in coturn's `use-auth-secret` scheme (the TURN REST API draft):
//! username `expiry:sub`, password base64(HMAC-SHA1(turn secret, username)).

use std::time::Duration;

use base64::Engine;
use hearth_proto::IceServer;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::secret::Secret;

/// TURN relays sharing one secret with this server.
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// `turn:`/`turns:` URLs, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub urls: Vec<String>,
    /// The `static-auth-secret` configured in coturn.
    pub secret: Secret,
    /// How long credentials stay valid.
    pub ttl: Duration,
}

/// What ICE servers clients are told about.
#[derive(Debug, Clone, Default)]
pub struct IceOptions {
    /// `stun:` URLs; may be empty.
    pub stun_urls: Vec<String>,
    /// TURN relays, if any.
    pub turn: Option<TurnOptions>,
}

/// The username and password for `sub` valid until `expiry_unix`.
pub fn turn_credential(secret: &Secret, sub: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{sub}");
    let password = match <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length, so this cannot happen; an empty password fails closed.
        Err(_) => String::new(),
    };
    (username, password)
}

impl IceOptions {
    /// The list for a `welcome` to `sub` at `now_unix`. Empty when nothing is configured: clients
    /// then gather host candidates only, which is honest for a one-machine setup.
    pub fn servers_for(&self, sub: &str, now_unix: u64) -> Vec<IceServer> {
        let mut servers = Vec::with_capacity(2);
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let Some(turn) = &self.turn
            && !turn.urls.is_empty()
        {
            let expiry = now_unix.saturating_add(turn.ttl.as_secs());
            let (username, credential) = turn_credential(&turn.secret, sub, expiry);
            servers.push(IceServer {
                urls: turn.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("turn-secret-for-tests-0123456789abc").unwrap()
    }

    /// Expected value computed independently with Python:
    /// `base64.b64encode(hmac.new(secret, b"1900000000:tablet-7", hashlib.sha1).digest())`.
    #[test]
    fn credential_matches_independent_hmac_sha1() {
        let (user, pass) = turn_credential(&secret(), "tablet-7", 1_900_000_000);
        assert_eq!(user, "1900000000:tablet-7");
        assert_eq!(pass, "w5oZGjgrl4JDTF2Ma3LiCtfqy/s=");
    }

    #[test]
    fn lists_only_what_is_configured() {
        assert!(IceOptions::default().servers_for("s", 0).is_empty());
        let stun_only = IceOptions {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn: None,
        };
        let list = stun_only.servers_for("s", 0);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].username, None);
        let both = IceOptions {
            stun_urls: vec![],
            turn: Some(TurnOptions {
                urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                secret: secret(),
                ttl: Duration::from_secs(3600),
            }),
        };
        let list = both.servers_for("tablet-7", 1_899_996_400);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].username.as_deref(), Some("1900000000:tablet-7"));
        assert_eq!(
            list[0].credential.as_deref(),
            Some("w5oZGjgrl4JDTF2Ma3LiCtfqy/s=")
        );
    }
}
