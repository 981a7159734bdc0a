//! The HTTP side: axum routes, the token check and the WebSocket origin
//! check. Routes are documented in `docs/http.md`.

use super::websocket::{serve_client, Hub};
use super::{json, metrics};
use crate::monitor::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, Request, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The page as written, with the line that loads d3 from `node_modules`
/// when the file is opened on its own.
const PAGE: &str = include_str!("../../web/visage.html");
/// d3, from `web/node_modules` through `build.rs`.
const D3: &str = include_str!(concat!(env!("OUT_DIR"), "/d3.min.js"));
/// The page's d3 `<script>` line, replaced by d3 itself when served.
const D3_TAG: &str = r#"<script src="node_modules/d3/dist/d3.min.js"></script>"#;

/// Largest message accepted from a WebSocket client (clients send nothing
/// the server uses).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The page with d3 inlined: built once, served from memory.
pub fn page() -> &'static str {
    static PAGE_WITH_D3: OnceLock<String> = OnceLock::new();
    PAGE_WITH_D3.get_or_init(|| PAGE.replacen(D3_TAG, &format!("<script>{D3}</script>"), 1))
}

#[derive(Clone)]
struct App {
    hub: Arc<Hub<State>>,
    token: Option<Arc<str>>,
    registry: Arc<Registry>,
}

/// The routes, serving `hub`'s state; every route but `/healthz` needs
/// `token` when one is set.
pub fn router(hub: Arc<Hub<State>>, token: Option<String>) -> Router {
    let app = App {
        registry: Arc::new(metrics::registry(hub.clone())),
        hub,
        token: token.map(Arc::from),
    };
    let guarded = Router::new()
        .route("/", get(index))
        .route("/ws", get(websocket))
        .route("/api/v1/snapshot", get(snapshot))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/jobs", get(jobs))
        .route("/metrics", get(prometheus))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    guarded
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// Refuses a request without the token (`Authorization: Bearer T` or
/// `?token=T`) with 401.
async fn require_token(Shared(app): Shared<App>, request: Request, next: Next) -> Response {
    let Some(token) = app.token.as_deref() else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(mut params)| params.remove("token"));
    let given = bearer.map(str::to_owned).or(query);
    if given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "401 Unauthorized: this icewatch needs its token, as `Authorization: Bearer TOKEN` or `?token=TOKEN`\n",
        )
            .into_response()
    }
}

/// Compares in time that does not depend on where the two differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a browser's `Origin` names the host the request was sent to.
/// No `Origin` means a client that is not a browser: allowed.
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (authority, host) {
        (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
        _ => false,
    }
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page(),
    )
        .into_response()
}

async fn websocket(
    Shared(app): Shared<App>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "403 Forbidden: the page's Origin is not the host it connects to\n",
        )
            .into_response();
    }
    let hub = app.hub;
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let end = serve_client(hub, sink, stream).await;
            tracing::debug!("WebSocket client gone: {end:?}");
        })
}

fn json_response(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn snapshot(Shared(app): Shared<App>) -> Response {
    json_response(app.hub.snapshot())
}

async fn hosts(Shared(app): Shared<App>) -> Response {
    json_response(json::hosts(&app.hub.state()))
}

async fn jobs(Shared(app): Shared<App>, Query(params): Query<HashMap<String, String>>) -> Response {
    let param = |k: &str| params.get(k).map(String::as_str);
    match json::JobQuery::parse(param("state"), param("host"), param("limit")) {
        Ok(query) => json_response(json::jobs(&app.hub.state(), &query)),
        Err(e) => (StatusCode::BAD_REQUEST, format!("400 Bad Request: {e}\n")).into_response(),
    }
}

async fn prometheus(Shared(app): Shared<App>) -> Response {
    match metrics::encode(&app.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
