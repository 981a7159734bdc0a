//! The Grafana dashboard (`docs/grafana/icewatch.json`) queries only
//! metrics that `/metrics` serves: every `icewatch_*` name in its queries
//! is checked against a running `icewatch demo`.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::command::{get, page_url, split_url, Running, PATIENCE};

/// Every query text of the dashboard: panel targets and variables.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                    _ => queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// The `icewatch_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("icewatch_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_served() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/icewatch.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    let mut texts = Vec::new();
    queries(&dashboard, &mut texts);
    let wanted: BTreeSet<String> = texts.iter().flat_map(|q| metric_names(q)).collect();
    assert!(wanted.len() >= 10, "{wanted:?}");

    let mut demo = Running::start(&["demo", "--listen", "127.0.0.1:0", "--seed", "3"]);
    let (host, _) = split_url(&page_url(&demo));
    // Per-host series exist once hosts are online, the flags of hosts
    // that hurt builds once the insights' reader has seen them.
    let deadline = Instant::now() + PATIENCE;
    let served = loop {
        let (status, text) = get(&host, "/metrics");
        assert_eq!(status, 200);
        let served: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(metric_names)
            .collect();
        if wanted.is_subset(&served) || Instant::now() >= deadline {
            break served;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let missing: Vec<&String> = wanted.difference(&served).collect();
    assert!(missing.is_empty(), "queried but not served: {missing:?}");
    demo.signal("INT");
    assert!(demo.wait().success());
}
