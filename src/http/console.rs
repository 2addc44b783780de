//! The web console: a single page served at `/`, its scripts and styles under `/console/`, all
//! embedded in the binary (no build step, nothing fetched from elsewhere), and
//! `/console/config`, the little the page needs to know about the server.
//!
//! The page talks to the server over the WebSocket transport (`/ws`), the same protocol as
//! TCP. It opens its connection with `?readonly=1`, so the server itself refuses its writes
//! (`-ERR read_only`); only when the server runs with `--console-writes` *and* the user turns
//! writes on in the page does it open a second, writable connection for appends and replays.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::HttpState;

/// One embedded file of the console.
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("console/", $file)),
        }
    };
}

/// Every file of the console. The page loads its modules by these paths.
pub const ASSETS: &[Asset] = &[
    asset!("/", HTML, "index.html"),
    asset!("/console/console.css", CSS, "console.css"),
    asset!("/console/favicon.svg", SVG, "favicon.svg"),
    asset!("/console/app.js", JS, "app.js"),
    asset!("/console/client.js", JS, "client.js"),
    asset!("/console/json.js", JS, "json.js"),
    asset!("/console/dom.js", JS, "dom.js"),
    asset!("/console/prometheus.js", JS, "prometheus.js"),
    asset!("/console/overview.js", JS, "overview.js"),
    asset!("/console/tail.js", JS, "tail.js"),
    asset!("/console/streams.js", JS, "streams.js"),
    asset!("/console/events.js", JS, "events.js"),
    asset!("/console/psubs.js", JS, "psubs.js"),
    asset!("/console/snapshots.js", JS, "snapshots.js"),
    asset!("/console/cluster.js", JS, "cluster.js"),
];

/// The page may load only its own files and talk only to its own origin (`/ws` included), and
/// may not be framed: the write switch must not be clickable from another site's frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge into the HTTP router.
pub fn routes() -> Router<HttpState> {
    let router = ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve_asset(asset) }))
    });
    router.route("/console/config", get(config))
}

fn serve_asset(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The files change with the binary; a browser must not keep an old page's scripts.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        asset.body,
    )
        .into_response()
}

/// `/console/config`: `{"writes":…,"version":…,"stores":[…],"store":…,"cluster":{…}}`.
/// `writes` is `--console-writes`; `cluster` says `single_node` until the server has clusters.
async fn config(State(state): State<HttpState>) -> Response {
    let config = &state.context.config;
    let json = serde_json::json!({
        "writes": config.console_writes,
        "version": env!("CARGO_PKG_VERSION"),
        "stores": config.stores,
        "store": config.default_store(),
        "cluster": { "mode": "single_node" },
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_vec(&json).expect("json serialises"),
    )
        .into_response()
}
