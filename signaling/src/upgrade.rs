//! The WebSocket handshake (RFC 6455, section 4.2) on an HTTP/1.1 request, and the socket it
//! gives: [`crate::frames`] over the connection's TCP stream, taken back from hyper.
//!
//! Written here rather than taken from axum's `WebSocketUpgrade`, which does the same checks:
//! axum's socket is tungstenite's, which keeps buffers as large as the largest message each
//! connection carried for as long as it lasts (see [`crate::frames`] and docs/BENCHMARKS.md).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::frames::Receiving;

/// A request that is not a WebSocket handshake this server accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Refused {
    #[error("A WebSocket handshake is a GET request.")]
    NotGet,
    #[error("The Connection header must include \"upgrade\".")]
    NoConnectionUpgrade,
    #[error("The Upgrade header must be \"websocket\".")]
    NotWebSocket,
    #[error("Only WebSocket version 13 is supported (Sec-WebSocket-Version: 13).")]
    WrongVersion,
    #[error("The Sec-WebSocket-Key header is missing.")]
    NoKey,
    #[error("This connection cannot be upgraded to a WebSocket.")]
    NotUpgradable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match self {
            Refused::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Refused::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, format!("{self}\n")).into_response()
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the handshake: the `101 Switching Protocols` answer, and the connection to take over
/// once it is sent.
pub(crate) fn accept(mut request: Request) -> Result<(Response, OnUpgrade), Refused> {
    if request.method() != Method::GET {
        return Err(Refused::NotGet);
    }
    let headers = request.headers();
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Refused::NoConnectionUpgrade);
    }
    if !header_has_token(headers, header::UPGRADE, "websocket") {
        return Err(Refused::NotWebSocket);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Refused::WrongVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Refused::NoKey)?;
    let accept =
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| Refused::NoKey)?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or(Refused::NotUpgradable)?;
    let response = (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response();
    Ok((response, on_upgrade))
}

/// The socket, once the `101` is sent; `None` when the client went away first. Data messages
/// over `max_message` bytes are skipped and reported.
///
/// The socket is the TCP stream itself, with what hyper read past the request: reads and
/// writes go to it straight, not through hyper's upgraded connection (the stream boxed behind
/// two buffering wrappers and tokio's adapter), which each connection kept besides.
pub(crate) async fn socket(
    on_upgrade: OnUpgrade,
    max_message: usize,
) -> Option<(TcpStream, Receiving)> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "the WebSocket upgrade failed");
            return None;
        }
    };
    // The type axum serves every connection as (`crate::server`), under the wrapper of the
    // protocol-detecting builder it serves them with, which this function of hyper-util's
    // unwraps (adding what that wrapper had read to `read_buf`).
    match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
        Ok(parts) => Some((
            parts.io.into_inner(),
            Receiving::new(&parts.read_buf, max_message),
        )),
        Err(_) => {
            tracing::error!("an upgraded connection was not served on a TCP stream; closing it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri("/v1/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_handshake_is_checked_header_by_header() {
        assert_eq!(
            accept(request(Method::POST, &GOOD)).err(),
            Some(Refused::NotGet)
        );
        let without = |name: &str| {
            let kept: Vec<_> = GOOD.iter().copied().filter(|(k, _)| *k != name).collect();
            accept(request(Method::GET, &kept)).err()
        };
        assert_eq!(without("connection"), Some(Refused::NoConnectionUpgrade));
        assert_eq!(without("upgrade"), Some(Refused::NotWebSocket));
        assert_eq!(
            without("sec-websocket-version"),
            Some(Refused::WrongVersion)
        );
        assert_eq!(without("sec-websocket-key"), Some(Refused::NoKey));
        // Everything right, but not a connection hyper can hand over (no server here).
        assert_eq!(
            accept(request(Method::GET, &GOOD)).err(),
            Some(Refused::NotUpgradable)
        );
    }
}
