//! Join tokens: HS256 JWTs that say who may join which room, as whom, until when.
//!
//! Expiry is checked here against a `now` passed in, not inside `jsonwebtoken`, so the decision is
//! testable without a clock.

use std::time::Duration;

use hearth_proto::{ErrorCode, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The longest room or subject a token may name, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// The longest display name a token may carry, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// What a join token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room it admits to.
    pub room: String,
    /// The holder's role.
    pub role: Role,
    /// The holder's display name.
    pub name: String,
    /// A stable id of the holder (a device, a person); reconnects are matched by it.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Unique id of this token.
    pub jti: String,
    /// The invitation it was redeemed from; refused once that invitation is withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inv: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, wrong algorithm, bad signature, or claims missing.
    #[error("the token is not valid")]
    Invalid,
    /// The `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Claims present but out of bounds (empty or overlong room, name or subject).
    #[error("the token's claims are out of bounds: {0}")]
    BadClaims(&'static str),
    /// Signing failed (only on a broken key).
    #[error("could not sign the token")]
    Sign,
}

impl TokenError {
    /// The wire code a client gets for this.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Expired => ErrorCode::ExpiredToken,
            TokenError::Invalid | TokenError::BadClaims(_) => ErrorCode::BadToken,
            TokenError::Sign => ErrorCode::Internal,
        }
    }
}

/// Signs and checks join tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<redacted>)")
    }
}

impl TokenKeys {
    /// Keys for HS256 with `secret`.
    pub fn new(secret: &Secret) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked in `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.required_spec_claims.insert("exp".to_owned());
        validation.required_spec_claims.insert("sub".to_owned());
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        check_bounds(claims)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| TokenError::Sign)
    }

    /// Mints a token for `room`/`role`/`name`, valid for `ttl` from `now_unix`, with a fresh `jti`
    /// and, unless given, a fresh `sub`.
    pub fn mint(
        &self,
        room: &str,
        role: Role,
        name: &str,
        sub: Option<&str>,
        ttl: Duration,
        now_unix: u64,
    ) -> Result<String, TokenError> {
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let claims = Claims {
            room: room.to_owned(),
            role,
            name: name.to_owned(),
            sub: sub.map_or_else(|| format!("sub-{jti}"), str::to_owned),
            exp: now_unix.saturating_add(ttl.as_secs()),
            jti,
            inv: None,
        };
        self.sign(&claims)
    }

    /// Checks signature, algorithm, claims and expiry at `now_unix`.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        check_bounds(&claims)?;
        Ok(claims)
    }
}

fn check_bounds(claims: &Claims) -> Result<(), TokenError> {
    let id_ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID_BYTES;
    if !id_ok(&claims.room) {
        return Err(TokenError::BadClaims("room"));
    }
    if !id_ok(&claims.sub) {
        return Err(TokenError::BadClaims("sub"));
    }
    if claims.name.trim().is_empty() || claims.name.len() > MAX_NAME_BYTES {
        return Err(TokenError::BadClaims("name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hearth-test-secret-0123456789abcdef";

    fn keys() -> TokenKeys {
        TokenKeys::new(&Secret::new(SECRET).unwrap())
    }

    fn kim() -> Claims {
        Claims {
            room: "kim-family".into(),
            role: Role::Resident,
            name: "Mrs Kim".into(),
            sub: "tablet-7".into(),
            exp: 1_900_000_000,
            jti: "jti-1".into(),
            inv: None,
        }
    }

    /// Signed independently with Python's `hmac`/`base64`/`json` (see the comment below), so
    /// a change in our header, claim order or HMAC use shows up here.
    ///
    /// ```text
    /// h = b64u(b'{"typ":"JWT","alg":"HS256"}')
    /// p = b64u(json.dumps(claims, separators=(",",":")).encode())
    /// s = b64u(hmac.new(SECRET, f"{h}.{p}".encode(), sha256).digest())
    /// ```
    const KIM_TOKEN: &str = include_str!("../tests/vectors/kim.jwt");

    #[test]
    fn signs_exactly_as_an_independent_implementation() {
        assert_eq!(keys().sign(&kim()).unwrap(), KIM_TOKEN.trim());
        assert_eq!(
            keys().verify(KIM_TOKEN.trim(), 1_800_000_000).unwrap(),
            kim()
        );
    }

    /// RFC 7515 appendix A.1: the HS256 example token and key. Its claims are not ours, so only
    /// the signature check is exercised: a valid signature gets past `decode` to claim parsing.
    #[test]
    fn rfc7515_hs256_signature_verifies() {
        use base64::Engine;
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(&key),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["iss"], "joe");
        let mut forged = token.to_owned();
        forged.replace_range(forged.len() - 2.., "Xj");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &forged,
                &DecodingKey::from_secret(&key),
                &validation
            )
            .is_err()
        );
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let token = keys().sign(&kim()).unwrap();
        assert_eq!(
            keys().verify(&token, 1_899_999_999).unwrap().room,
            "kim-family"
        );
        assert_eq!(
            keys().verify(&token, 1_900_000_000),
            Err(TokenError::Expired)
        );
        assert_eq!(TokenError::Expired.code(), ErrorCode::ExpiredToken);
    }

    #[test]
    fn forged_and_foreign_tokens_are_invalid() {
        let token = keys().sign(&kim()).unwrap();
        let other = TokenKeys::new(&Secret::new(&"x".repeat(32)).unwrap());
        assert_eq!(other.verify(&token, 0), Err(TokenError::Invalid));
        // Same header and signature, claims edited to another room.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = kim();
        claims.room = "someone-else".into();
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap());
        let forged = format!("{}.{}.{}", parts[0], payload, parts[2]);
        assert_eq!(keys().verify(&forged, 0), Err(TokenError::Invalid));
        assert_eq!(keys().verify("not a token", 0), Err(TokenError::Invalid));
        // alg=none is never accepted.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(keys().verify(&none, 0), Err(TokenError::Invalid));
    }

    #[test]
    fn minted_tokens_carry_fresh_ids_and_bounds_hold() {
        let k = keys();
        let a = k
            .verify(
                &k.mint("r", Role::Guest, "Ann", None, Duration::from_secs(60), 1000)
                    .unwrap(),
                1000,
            )
            .unwrap();
        let b = k
            .verify(
                &k.mint("r", Role::Guest, "Ann", None, Duration::from_secs(60), 1000)
                    .unwrap(),
                1000,
            )
            .unwrap();
        assert_eq!(a.exp, 1060);
        assert_ne!(a.jti, b.jti);
        assert_ne!(a.sub, b.sub);
        assert_eq!(
            k.mint("", Role::Guest, "Ann", None, Duration::from_secs(60), 0),
            Err(TokenError::BadClaims("room"))
        );
        assert_eq!(
            k.mint(
                "r",
                Role::Guest,
                &"n".repeat(300),
                None,
                Duration::from_secs(60),
                0
            ),
            Err(TokenError::BadClaims("name"))
        );
    }
}
