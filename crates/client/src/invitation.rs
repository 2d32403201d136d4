//! Invitations: how a device gets its server address and token.
//!
//! A care home hands out a link, e.g. `hearth://join?server=wss%3A%2F%2Fcalls.example.org%2Fv1%2Fws&token=eyJ…`
//! or `https://calls.example.org/join#token=eyJ…` (the server is the link's host), or the token
//! itself as a code to paste next to a server address. The token's claims are read here only
//! to show who the invitation is for and to choose the screens; the server checks the
//! signature.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use specta::Type;

use hearth_proto::Role;

use crate::error::{ClientError, ErrorCode};

/// A server and a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Invitation {
    /// The signaling server's WebSocket URL (`ws://host:port/v1/ws`).
    pub server: String,
    /// The join token. Never logged.
    pub token: String,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Who an invitation is for, as its token says.
#[derive(Debug, Clone, PartialEq, Serialize, Type)]
pub struct Identity {
    /// The room it admits to.
    pub room: String,
    /// The role, which chooses the screens.
    pub role: Role,
    /// The name others see.
    pub name: String,
    /// When it stops working, milliseconds since the Unix epoch.
    pub expires_at_ms: Option<f64>,
}

#[derive(Deserialize)]
struct Claims {
    room: String,
    role: String,
    name: String,
    exp: Option<u64>,
}

fn bad(message: &str) -> ClientError {
    ClientError::new(ErrorCode::BadInvitation, message)
}

/// A bare code or token without its server.
fn needs_server() -> ClientError {
    ClientError::new(
        ErrorCode::NeedsServer,
        "This code needs the server address that came with it.",
    )
}

/// A server address that is not one.
fn bad_address() -> ClientError {
    ClientError::new(
        ErrorCode::BadServerAddress,
        "The server address is not valid. It looks like https://calls.example.org.",
    )
}

const NOT_AN_INVITATION: &str =
    "This is not a Hearth invitation. Copy the whole link or code from the care home's message.";

impl Invitation {
    /// Reads what a person pasted: a link, or a code with `server` given separately.
    pub fn parse(input: &str, server: Option<&str>) -> Result<Self, ClientError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(bad("Paste the invitation link or code from the care home."));
        }
        let (server, token) = if looks_like_token(input) {
            let server = server
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(needs_server)?;
            (websocket_url(server)?, input.to_owned())
        } else {
            from_link(input)?
        };
        let invitation = Self { server, token };
        invitation.identity()?;
        Ok(invitation)
    }

    /// What the token says about its holder. Fails on a token that cannot be read.
    pub fn identity(&self) -> Result<Identity, ClientError> {
        let payload = self
            .token
            .split('.')
            .nth(1)
            .ok_or_else(|| bad(NOT_AN_INVITATION))?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| bad(NOT_AN_INVITATION))?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| bad(NOT_AN_INVITATION))?;
        let role: Role = claims.role.parse().map_err(|_| bad(NOT_AN_INVITATION))?;
        Ok(Identity {
            room: claims.room,
            role,
            name: claims.name,
            expires_at_ms: claims.exp.map(|s| s as f64 * 1000.0),
        })
    }

    /// True when the token's expiry has passed at `now_ms`.
    pub fn expired(&self, now_ms: f64) -> bool {
        self.identity()
            .ok()
            .and_then(|i| i.expires_at_ms)
            .is_some_and(|exp| exp <= now_ms)
    }
}

/// What a person pasted: an invitation with its token, or a short code the server exchanges
/// for one (`POST /v1/redeem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pasted {
    /// Ready to use.
    Ready(Invitation),
    /// A code (from `https://host/join/CODE`, or typed next to a server address).
    Code {
        /// The server's WebSocket URL.
        server: String,
        /// The code, as typed.
        code: String,
    },
}

/// A short code: eight letters and digits, with or without a dash or spaces.
fn looks_like_code(s: &str) -> bool {
    let letters: String = s.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    letters.len() == 8 && letters.chars().all(|c| c.is_ascii_alphanumeric())
}

impl Pasted {
    /// Reads a link, a token or a short code (`server` is needed with a bare token or code).
    pub fn read(input: &str, server: Option<&str>) -> Result<Self, ClientError> {
        let input = input.trim();
        if looks_like_code(input) {
            let server = server
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(needs_server)?;
            return Ok(Self::Code {
                server: websocket_url(server)?,
                code: input.to_owned(),
            });
        }
        if let Ok(url) = url::Url::parse(input)
            && matches!(url.scheme(), "http" | "https")
            && let Some(code) = url.path().strip_prefix("/join/")
            && looks_like_code(code)
        {
            return Ok(Self::Code {
                server: websocket_url(input)?,
                code: code.to_owned(),
            });
        }
        Invitation::parse(input, server).map(Self::Ready)
    }
}

/// The HTTP base of a server from its WebSocket URL: `wss://h/v1/ws` is `https://h`.
pub fn http_base(ws_url: &str) -> Result<String, ClientError> {
    let url = url::Url::parse(ws_url).map_err(|_| bad(NOT_AN_INVITATION))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return Err(bad(NOT_AN_INVITATION)),
    };
    let host = url.host_str().ok_or_else(|| bad(NOT_AN_INVITATION))?;
    Ok(match url.port() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

fn looks_like_token(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3 && !s.contains(['/', ':', ' '])
}

/// `ws`/`wss` URLs are kept; `http(s)://host[:port]` (with or without a path) becomes that
/// host's `/v1/ws`.
fn websocket_url(s: &str) -> Result<String, ClientError> {
    let url = url::Url::parse(s).map_err(|_| bad_address())?;
    let scheme = match url.scheme() {
        "ws" | "wss" => return Ok(url.to_string()),
        "http" => "ws",
        "https" => "wss",
        _ => {
            return Err(bad_address());
        }
    };
    let host = url.host_str().ok_or_else(|| bad(NOT_AN_INVITATION))?;
    Ok(match url.port() {
        Some(p) => format!("{scheme}://{host}:{p}/v1/ws"),
        None => format!("{scheme}://{host}/v1/ws"),
    })
}

fn from_link(input: &str) -> Result<(String, String), ClientError> {
    let url = url::Url::parse(input).map_err(|_| bad(NOT_AN_INVITATION))?;
    let mut params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if let Some(fragment) = url.fragment() {
        params.extend(url::form_urlencoded::parse(fragment.as_bytes()).into_owned());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let token = get("token").ok_or_else(|| bad(NOT_AN_INVITATION))?;
    if !looks_like_token(&token) {
        return Err(bad(NOT_AN_INVITATION));
    }
    let server = match url.scheme() {
        "hearth" => websocket_url(&get("server").ok_or_else(|| bad(NOT_AN_INVITATION))?)?,
        "http" | "https" => websocket_url(input)?,
        _ => return Err(bad(NOT_AN_INVITATION)),
    };
    Ok((server, token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b(r#"{"alg":"HS256","typ":"JWT"}"#), b(claims))
    }

    #[test]
    fn reads_links_and_codes() {
        let t = token(r#"{"room":"kim","role":"family","name":"Ann","exp":2000000000}"#);
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let link = format!(
            "hearth://join?server={}&token={t}",
            enc("ws://127.0.0.1:7800/v1/ws")
        );
        let i = Invitation::parse(&link, None).unwrap();
        assert_eq!(i.server, "ws://127.0.0.1:7800/v1/ws");
        assert_eq!(i.token, t);
        let id = i.identity().unwrap();
        assert_eq!(
            (id.room.as_str(), id.role, id.name.as_str()),
            ("kim", Role::Family, "Ann")
        );
        assert_eq!(id.expires_at_ms, Some(2e12));

        let i =
            Invitation::parse(&format!("https://calls.example.org/join#token={t}"), None).unwrap();
        assert_eq!(i.server, "wss://calls.example.org/v1/ws");
        let i = Invitation::parse(&format!("  {t}\n"), Some("http://10.0.0.2:7800")).unwrap();
        assert_eq!(i.server, "ws://10.0.0.2:7800/v1/ws");
        assert!(!i.expired(1e12));
        assert!(i.expired(3e12));
        assert!(!format!("{i:?}").contains(&t), "tokens are never printed");
    }

    #[test]
    fn reads_short_codes_and_join_links() {
        assert_eq!(
            Pasted::read("k7mq-2xr9", Some("http://10.0.0.2:7800")).unwrap(),
            Pasted::Code {
                server: "ws://10.0.0.2:7800/v1/ws".into(),
                code: "k7mq-2xr9".into()
            }
        );
        assert_eq!(
            Pasted::read(" https://calls.example.org/join/K7MQ2XR9 ", None).unwrap(),
            Pasted::Code {
                server: "wss://calls.example.org/v1/ws".into(),
                code: "K7MQ2XR9".into()
            }
        );
        // A code alone: the person is told it needs its server address, not that it is no
        // invitation at all.
        let e = Pasted::read("K7MQ-2XR9", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::NeedsServer);
        let e = Pasted::read("K7MQ-2XR9", Some("ftp://calls.example.org")).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadServerAddress);
        let t = token(r#"{"room":"kim","role":"family","name":"Ann"}"#);
        assert!(matches!(
            Pasted::read(&t, Some("ws://h:1/v1/ws")).unwrap(),
            Pasted::Ready(_)
        ));
        assert_eq!(
            http_base("wss://calls.example.org/v1/ws").unwrap(),
            "https://calls.example.org"
        );
        assert_eq!(
            http_base("ws://127.0.0.1:7800/v1/ws").unwrap(),
            "http://127.0.0.1:7800"
        );
    }

    #[test]
    fn refuses_what_is_not_an_invitation() {
        let t = token(r#"{"room":"kim","role":"family","name":"Ann"}"#);
        for (input, server, code) in [
            ("", None, ErrorCode::BadInvitation),
            ("hello", None, ErrorCode::BadInvitation),
            ("https://example.org/", None, ErrorCode::BadInvitation),
            (t.as_str(), None, ErrorCode::NeedsServer),
            (t.as_str(), Some("ftp://x"), ErrorCode::BadServerAddress),
            (
                "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
                Some("ws://h/v1/ws"),
                ErrorCode::BadInvitation,
            ),
        ] {
            let e = Invitation::parse(input, server).unwrap_err();
            assert_eq!(e.code, code, "{input:?}");
            assert!(e.message.ends_with('.'), "a sentence: {}", e.message);
        }
        let doctor = token(r#"{"room":"kim","role":"doctor","name":"X"}"#);
        assert!(Invitation::parse(&doctor, Some("ws://h/v1/ws")).is_err());
    }
}
