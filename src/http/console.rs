//! The web console for on-call (`console/` in the repository): `GET /` is its page and
//! `/console/*` its assets, embedded in the binary at build time, so the console needs no
//! separate server and loads nothing from outside. The page talks only to the public API.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts and styles from this
//! origin only: no inline script, no `eval`), `nosniff`, no referrer and no framing.
//! `GET /?Action=...` stays the Alibaba CloudMonitor RPC endpoint.

use super::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// `(path under /console/, content type, bytes)` of every embedded asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    ("js/app.js", JS, include_bytes!("../../console/js/app.js")),
    ("js/api.js", JS, include_bytes!("../../console/js/api.js")),
    ("js/dom.js", JS, include_bytes!("../../console/js/dom.js")),
    (
        "js/format.js",
        JS,
        include_bytes!("../../console/js/format.js"),
    ),
    (
        "js/chart.js",
        JS,
        include_bytes!("../../console/js/chart.js"),
    ),
    (
        "js/events.js",
        JS,
        include_bytes!("../../console/js/events.js"),
    ),
    (
        "js/issues.js",
        JS,
        include_bytes!("../../console/js/issues.js"),
    ),
    (
        "js/monitors.js",
        JS,
        include_bytes!("../../console/js/monitors.js"),
    ),
    (
        "js/stats.js",
        JS,
        include_bytes!("../../console/js/stats.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: &[u8] = include_bytes!("../../console/index.html");

/// The asset routes (`GET /` is routed with the Alibaba endpoint, see [`root`]).
pub fn routes() -> Router<AppState> {
    Router::new().route("/console/*path", get(asset))
}

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Assets change with the binary: revalidate rather than cache for ever.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console page.
pub fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ct, body)) => with_headers(ct, body),
        None => (
            StatusCode::NOT_FOUND,
            super::ApiError::NotFound(format!("no console asset {path:?}")),
        )
            .into_response(),
    }
}

/// `GET /`: an Alibaba CloudMonitor RPC call when the query names an `Action`, otherwise the
/// console page.
pub async fn root(State(st): State<AppState>, req: Request) -> Response {
    let is_rpc = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("Action"))
    });
    if is_rpc {
        super::custom::alibaba_request(st, req).await
    } else {
        index()
    }
}
