//! The HTTP side: axum routes, the token, the `Host` check against DNS
//! rebinding and the WebSocket origin check. Routes and rules are
//! documented in `docs/http.md`; those of the scheduler's text port
//! (`/api/v1/control`, a host's internals, `--admin`'s actions) in
//! `docs/admin.md`.

use super::control::{Action, Control, ControlError};
use super::host::{origin_authority, AllowedHosts};
use super::socket;
use super::websocket::{serve_client, Hub};
use super::{json, metrics};
use crate::monitor::State;
use axum::extract::{ConnectInfo, Path, Query, Request, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The page as served: `web/visage.html` with d3 and the page's modules
/// (`web/js/`) inlined by `build.rs`, so that it loads nothing else.
const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/visage.html"));

/// Largest message accepted from a WebSocket client (clients send nothing
/// the server uses).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The page, with everything it needs inlined.
pub fn page() -> &'static str {
    PAGE
}

/// Who may read the page and the APIs.
#[derive(Clone, Debug)]
pub struct Access {
    /// Required on every route but `/healthz` when set; the `Host` header
    /// is then not checked.
    pub token: Option<String>,
    /// Without a token, the hosts a request may name.
    pub hosts: AllowedHosts,
    /// WebSocket clients served at once; more are refused with 503, so
    /// that plain requests always find a connection slot.
    pub max_websockets: usize,
    /// The history database that `/api/v1/history/*` reads, if any.
    #[cfg(feature = "history")]
    pub history: Option<std::path::PathBuf>,
    /// Builds and the hosts that hurt them (`/api/v1/builds`), if read.
    #[cfg(feature = "history")]
    pub insights: Option<Arc<crate::insights::Live>>,
    /// The scheduler's text port (`docs/admin.md`), if it is used.
    pub control: Option<Arc<Control>>,
}

#[derive(Clone)]
struct App {
    hub: Arc<Hub<State>>,
    token: Option<Arc<str>>,
    hosts: Arc<AllowedHosts>,
    max_websockets: u64,
    registry: Arc<Registry>,
    #[cfg(feature = "history")]
    history: Option<Arc<std::path::Path>>,
    control: Option<Arc<Control>>,
}

/// The routes, serving `hub`'s state as `access` allows: every route but
/// `/healthz` needs the token when there is one, else a `Host` header that
/// names an allowed host.
pub fn router(hub: Arc<Hub<State>>, access: Access) -> Router {
    let mut registry = metrics::registry(hub.clone());
    if let Some(control) = &access.control {
        registry.register(
            "admin_actions",
            "Actions asked for from the page, by action and result",
            control.actions.clone(),
        );
    }
    #[cfg(feature = "history")]
    if let Some(live) = &access.insights {
        registry.register_collector(super::builds::collector(live.clone()));
    }
    let app = App {
        registry: Arc::new(registry),
        hub,
        token: access.token.map(Arc::from),
        hosts: Arc::new(access.hosts),
        max_websockets: u64::try_from(access.max_websockets).unwrap_or(u64::MAX),
        #[cfg(feature = "history")]
        history: access.history.clone().map(Arc::from),
        control: access.control,
    };
    let guarded = Router::new()
        .route("/", get(index))
        .route("/ws", get(websocket))
        .route("/api/v1/snapshot", get(snapshot))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/jobs", get(jobs))
        .route("/metrics", get(prometheus))
        .route("/api/v1/control", get(control_view))
        .route("/api/v1/hosts/{name}/internals", get(internals))
        .route("/api/v1/hosts/{name}/{action}", post(act));
    #[cfg(feature = "history")]
    let guarded = guarded
        .route("/api/v1/history/jobs", get(history_jobs))
        .route("/api/v1/history/hosts", get(history_hosts));
    #[cfg(feature = "history")]
    let guarded = match access.insights {
        Some(live) => guarded.merge(super::builds::router(live, access.history)),
        None => guarded,
    };
    let guarded = guarded.route_layer(middleware::from_fn_with_state(app.clone(), guard));
    guarded
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// With a token, refuses a request without it (`Authorization: Bearer T`
/// or `?token=T`) with 401; without one, refuses a request whose `Host`
/// is not an allowed host with 421.
async fn guard(Shared(app): Shared<App>, request: Request, next: Next) -> Response {
    let allowed = match app.token.as_deref() {
        Some(token) => has_token(&request, token),
        None => {
            return match refused_host(&app.hosts, request.headers()) {
                Some(refusal) => refusal,
                None => next.run(request).await,
            }
        }
    };
    if allowed {
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

/// Whether the request carries `token`, in an `Authorization` header of
/// the `Bearer` scheme (any case, RFC 7235) or as `?token=`.
fn has_token(request: &Request, token: &str) -> bool {
    let bearer = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(bearer_credentials)
        .any(|given| same_secret(given.as_bytes(), token.as_bytes()));
    bearer
        || Query::<HashMap<String, String>>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(mut params)| params.remove("token"))
            .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// The credentials of an `Authorization: Bearer ...` value: the scheme
/// in any case, then one or more spaces.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// Compares in time that does not depend on where the two differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The 421 answer for a request whose `Host` is not allowed, or `None`
/// if it may be served. A request without `Host` is not from a browser
/// (HTTP/1.1 browsers always send it): served.
fn refused_host(hosts: &AllowedHosts, headers: &HeaderMap) -> Option<Response> {
    let host = match headers.get(header::HOST)?.to_str() {
        Ok(host) if hosts.allows(host) => return None,
        Ok(host) => host,
        Err(_) => "?",
    };
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let name: String = name.chars().take(100).collect();
    Some(
        (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "421 Misdirected Request: icewatch does not answer to the host name {name:?} \
                 (a guard against DNS rebinding); to serve it under that name, start it with \
                 --allowed-host {name}, or with a --token\n"
            ),
        )
            .into_response(),
    )
}

/// Whether a browser's `Origin` is the page's own: the host the request
/// was sent to (`Host`) and, without a token, an allowed host. No
/// `Origin` means a client that is not a browser: allowed.
fn origin_allowed(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(authority) = origin.to_str().ok().and_then(origin_authority) else {
        return false;
    };
    let same = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| authority.eq_ignore_ascii_case(host));
    same && (app.token.is_some() || app.hosts.allows(authority))
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

async fn websocket(Shared(app): Shared<App>, request: Request) -> Response {
    if !origin_allowed(&app, request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "403 Forbidden: the page's Origin is not the host it connects to\n",
        )
            .into_response();
    }
    let clients = app.hub.stats().clients.load(Relaxed);
    if clients >= app.max_websockets {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "503 Service Unavailable: {clients} WebSocket clients, the most served at once\n"
            ),
        )
            .into_response();
    }
    let hub = app.hub;
    socket::upgrade(
        request,
        socket::config(MAX_CLIENT_MESSAGE),
        move |socket| async move {
            let (sink, stream) = socket.split();
            let end = serve_client(hub, sink, stream).await;
            tracing::debug!("WebSocket client gone: {end:?}");
        },
    )
}

fn json_response(body: impl Into<axum::body::Body>) -> Response {
    let body: axum::body::Body = body.into();
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

#[cfg(feature = "history")]
async fn history_jobs(app: Shared<App>, params: Query<HashMap<String, String>>) -> Response {
    history_page(app, params, false).await
}

#[cfg(feature = "history")]
async fn history_hosts(app: Shared<App>, params: Query<HashMap<String, String>>) -> Response {
    history_page(app, params, true).await
}

/// A page of the history's jobs or host sessions, read on a blocking
/// thread: `{"jobs": [...], "next": cursor}` (`docs/http.md`).
#[cfg(feature = "history")]
async fn history_page(
    Shared(app): Shared<App>,
    Query(params): Query<HashMap<String, String>>,
    hosts: bool,
) -> Response {
    use crate::history::query::{self, Filter};
    let Some(path) = app.history.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "404 Not Found: this icewatch keeps no history (it was started with --db none, \
             or as demo or replay without --db)\n",
        )
            .into_response();
    };
    let filter = match Filter::from_params(|k| params.get(k).map(String::as_str)) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("400 Bad Request: {e}\n")).into_response()
        }
    };
    let read = tokio::task::spawn_blocking(move || {
        let conn = query::open_read(&path)?;
        let failed = |e| crate::history::HistoryError::of(&path, e);
        Ok::<_, crate::history::HistoryError>(if hosts {
            let rows = query::hosts(&conn, &filter).map_err(failed)?;
            query::page_json("hosts", &rows, |h| h.seq, filter.limit)
        } else {
            let rows = query::jobs(&conn, &filter).map_err(failed)?;
            query::page_json("jobs", &rows, |j| j.seq, filter.limit)
        })
    })
    .await;
    match read {
        Ok(Ok(body)) => json_response(body),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("503 Service Unavailable: {e}\n"),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A JSON answer with this status.
fn json_status(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, json_response(value.to_string())).into_response()
}

/// The 404 of a route whose feature is off.
fn off(what: &str) -> Response {
    json_status(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "ok": false, "error": what }),
    )
}

fn control_failed(e: &ControlError) -> Response {
    let status = match e {
        ControlError::Busy | ControlError::TooSoon(_) => StatusCode::TOO_MANY_REQUESTS,
        ControlError::BadName(_) => StatusCode::BAD_REQUEST,
        ControlError::NoSuchHost(_) => StatusCode::NOT_FOUND,
        ControlError::TextPort(_) => StatusCode::BAD_GATEWAY,
        ControlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    json_status(
        status,
        &serde_json::json!({ "ok": false, "error": e.to_string() }),
    )
}

const NO_TEXT_PORT: &str = "this icewatch does not use the scheduler's text port";

/// `GET /api/v1/control`: what the text port told at the last poll.
async fn control_view(Shared(app): Shared<App>) -> Response {
    match &app.control {
        Some(control) => json_status(
            StatusCode::OK,
            &serde_json::to_value(control.view()).unwrap_or_default(),
        ),
        None => off(NO_TEXT_PORT),
    }
}

/// `GET /api/v1/hosts/{name}/internals`: the daemon's own account.
async fn internals(Shared(app): Shared<App>, Path(name): Path<String>) -> Response {
    let Some(control) = &app.control else {
        return off(NO_TEXT_PORT);
    };
    match control.internals(&name).await {
        Ok(daemons) => json_status(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "host": name, "daemons": daemons }),
        ),
        Err(e) => control_failed(&e),
    }
}

/// `POST /api/v1/hosts/{name}/{block,unblock,remove}`, with `--admin` only:
/// from a browser, only from the page's own origin under a host name
/// icewatch answers to; every one audited.
async fn act(
    Shared(app): Shared<App>,
    Path((name, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (Some(control), Some(action)) = (
        app.control.as_ref().filter(|c| c.admin()),
        Action::from_name(&action),
    ) else {
        return off("actions are off: start icewatch monitor with --admin (and a --token)");
    };
    let headers = request.headers();
    if let Some(refusal) = refused_host(&app.hosts, headers) {
        return refusal;
    }
    if !origin_allowed(&app, headers) {
        return json_status(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "ok": false, "error": "the request's Origin is not this page's" }),
        );
    }
    let who = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => peer.to_string(),
        None => "an unknown client".to_owned(),
    };
    let via = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map_or_else(String::new, |o| format!(" (page {o})"));
    match control.act(action, &name, &format!("{who}{via}")).await {
        Ok(outcome) => json_status(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "changed": outcome.changed, "said": outcome.said }),
        ),
        Err(e) => control_failed(&e),
    }
}
