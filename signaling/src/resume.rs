//! Resume secrets: a session's secret is an HMAC of its peer id under the server secret, so any
//! node that shares the secret can check it without storing anything.

use base64::Engine;
use hearth_proto::PeerId;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Makes and checks resume secrets.
#[derive(Clone)]
pub(crate) struct ResumeKeys {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ResumeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKeys(..)")
    }
}

/// Domain separation: the same server secret also signs tokens and TURN credentials.
const LABEL: &[u8] = b"hearth resume v1\0";

impl ResumeKeys {
    pub(crate) fn new(secret: &Secret) -> ResumeKeys {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
            // HMAC takes keys of any length.
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        ResumeKeys { mac }
    }

    fn tag(&self, peer: &PeerId) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(LABEL);
        mac.update(peer.as_str().as_bytes());
        mac
    }

    /// The secret of session `peer`.
    pub(crate) fn secret_for(&self, peer: &PeerId) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.tag(peer).finalize().into_bytes())
    }

    /// Whether `secret` is session `peer`'s (compared in constant time).
    pub(crate) fn verify(&self, peer: &PeerId, secret: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(secret) else {
            return false;
        };
        self.tag(peer).verify_slice(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_its_own_session_only() {
        let keys = ResumeKeys::new(&Secret::generate());
        let (a, b) = (PeerId::from("a"), PeerId::from("b"));
        let secret = keys.secret_for(&a);
        assert!(keys.verify(&a, &secret));
        assert!(!keys.verify(&b, &secret));
        assert!(!keys.verify(&a, "not base64!"));
        assert!(!keys.verify(&a, ""));
        let other = ResumeKeys::new(&Secret::generate());
        assert!(!other.verify(&a, &secret), "another server secret");
    }
}
