//! The browser mode's page: the desktop app's UI, built once (`ui/dist`), served at every
//! invitation link (`/join/<code>`) so a relative or patient without the app joins from a
//! browser. The page redeems the code itself (`POST /v1/redeem`). Without `--web-root` the links
//! answer with a plain sentence instead.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Redirect;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::hub::Hub;

/// The page may talk to this server (HTTP and its WebSocket: `'self'` covers `ws:`/`wss:` to
/// the same host) and use the camera and microphone; nothing else loads.
const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; \
     media-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'";

/// The routes under `/join`.
pub(crate) fn routes(root: Option<PathBuf>) -> Router<Arc<Hub>> {
    let Some(root) = root else {
        let missing = || async {
            (
                StatusCode::NOT_FOUND,
                "This server does not offer the browser page. Use the Hearth app with this invitation's code.\n",
            )
        };
        return Router::new()
            .route("/join", get(missing))
            .route("/join/", get(missing))
            .route("/join/{code}", get(missing));
    };
    let index = ServeFile::new(root.join("index.html"));
    Router::new()
        .route("/join", get(|| async { Redirect::permanent("/join/") }))
        .route_service("/join/", index.clone())
        .route_service("/join/{code}", index)
        .nest_service("/join/assets", ServeDir::new(root.join("assets")))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self)"),
        ))
}

/// True when `root` holds a built page.
pub fn looks_built(root: &std::path::Path) -> bool {
    root.join("index.html").is_file() && root.join("assets").is_dir()
}
