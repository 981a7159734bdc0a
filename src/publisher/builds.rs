//! `GET /api/v1/builds` and `GET /api/v1/insights/hosts` (`docs/http.md`,
//! `docs/insights.md`): builds from the live reader ([`Live`]) and, before
//! what it holds, from the history database; the hosts that hurt builds;
//! and the same as Prometheus metrics.

use crate::history::query::{self, Filter};
use crate::history::{HistoryError, Location, Reading};
use crate::insights::{Build, Live};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Insights {
    live: Arc<Live>,
    history: Option<Arc<Location>>,
}

/// The routes, reading `live` and the history at `history`, if any.
pub fn router<S: Clone + Send + Sync + 'static>(
    live: Arc<Live>,
    history: Option<Location>,
) -> Router<S> {
    Router::new()
        .route("/api/v1/builds", get(builds))
        .route("/api/v1/insights/hosts", get(hosts))
        .with_state(Insights {
            live,
            history: history.map(Arc::from),
        })
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page of builds, newest first: `{"builds": [...], "next": cursor,
/// "gap_ms": n}`; the cursor is the `start_ms` of the page's last build.
async fn builds(
    State(app): State<Insights>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let filter = match Filter::from_params(|k| params.get(k).map(String::as_str)) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("400 Bad Request: {e}\n")).into_response()
        }
    };
    let live = app.live.clone();
    let read = tokio::task::spawn_blocking(move || page(&live, app.history.as_deref(), &filter));
    match read.await {
        Ok(Ok(body)) => json(StatusCode::OK, body),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("503 Service Unavailable: {e}\n"),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The live builds, and the history's before the oldest job the live
/// reader holds, as `filter` asks.
fn page(live: &Live, history: Option<&Location>, filter: &Filter) -> Result<String, HistoryError> {
    let within = |b: &Build| {
        filter.since_ms.map_or(true, |s| b.end_ms >= s)
            && filter.until_ms.map_or(true, |u| b.end_ms < u)
    };
    let live_builds = live.builds();
    let mut builds: Vec<Build> = live_builds.iter().filter(|b| within(b)).cloned().collect();
    if let Some(at) = history {
        let held_from = live.oldest_ms().unwrap_or_else(|| live.now_ms());
        // The page's newest builds at most, and as many more as the live
        // reader may show instead (below).
        let before = Filter {
            until_ms: Some(filter.until_ms.map_or(held_from, |u| u.min(held_from))),
            limit: filter.limit.saturating_add(live_builds.len()),
            ..filter.clone()
        };
        // The history's builds are whole: one the live reader holds the
        // end of is shown as the live reader has it, not twice.
        let live_hosts: Vec<&Option<String>> = live_builds.iter().map(|b| &b.host).collect();
        let kept = Reading::open_read(at)?.builds(&before, live.gap_ms())?;
        builds.extend(
            kept.into_iter()
                .filter(|b| b.end_ms < held_from || !live_hosts.contains(&&b.host)),
        );
    }
    let limit = filter.limit.clamp(1, query::MAX_LIMIT);
    let rows = query::newest_page(&mut builds, filter);
    let next = rows
        .last()
        .filter(|_| rows.len() >= limit)
        .map(|b| b.start_ms);
    Ok(serde_json::json!({ "builds": rows, "next": next, "gap_ms": live.gap_ms() }).to_string())
}

/// The hosts that hurt builds now: `{"hosts": [flag...]}`.
async fn hosts(State(app): State<Insights>) -> Response {
    let flags = app.live.flags();
    json(
        StatusCode::OK,
        serde_json::json!({ "hosts": *flags }).to_string(),
    )
}

/// The Prometheus collector of `live`: the flags and the open builds.
pub fn collector(live: Arc<Live>) -> Box<dyn Collector> {
    Box::new(InsightsCollector { live })
}

#[derive(Debug)]
struct InsightsCollector {
    live: Arc<Live>,
}

impl Collector for InsightsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let flags = self.live.flags();
        let mut family = e.encode_descriptor(
            "host_hurting",
            "1 for each rule of docs/insights.md a host breaks now (failing, slow, protocol, \
             features, flapping)",
            None,
            MetricType::Gauge,
        )?;
        for f in flags.iter() {
            let labels = [("host", f.host.as_str()), ("rule", f.kind)];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = e.encode_descriptor(
            "host_hurting_value",
            "The number behind each rule a host breaks (share of bad jobs, ms per MiB, \
             protocol, logins an hour)",
            None,
            MetricType::Gauge,
        )?;
        for f in flags.iter() {
            let labels = [("host", f.host.as_str()), ("rule", f.kind)];
            ConstGauge::new(f.value).encode(family.encode_family(&labels)?)?;
        }
        let open = self.live.builds().iter().filter(|b| b.open).count();
        let g = ConstGauge::new(open as i64);
        g.encode(e.encode_descriptor(
            "builds_open",
            "Builds going on now (a job of theirs is active or ended within the build gap)",
            None,
            g.metric_type(),
        )?)
    }
}
