//! The JSON the publishers send, pinned with insta: the WebSocket snapshot
//! and diff messages of `docs/websocket.md` and the `/api/v1` answers of
//! `docs/http.md`, from a state fed with real scheduler messages.

mod support;

use icewatch::monitor::lock_state;
use icewatch::publisher::delta::Delta;
use icewatch::publisher::json::{self, JobQuery, QueryError};
use icewatch::publisher::websocket::Rendered;
use serde_json::Value;
use support::feed::Feed;

/// A page's memory of what it was sent, from a snapshot of the feed's state now.
fn follow(feed: &Feed) -> Delta {
    Delta::follow(&mut lock_state(&feed.state))
}

/// The next diff message for the page that `delta` remembers, if any.
fn publish(feed: &Feed, delta: &mut Delta, seq: u64) -> Option<String> {
    match json::diff_message(&mut lock_state(&feed.state), delta, seq) {
        Rendered::Diff(text) => Some(text),
        Rendered::Nothing => None,
        Rendered::Snapshot => panic!("a snapshot instead of a diff"),
    }
}

fn pretty(text: &str) -> String {
    let value: Value = serde_json::from_str(text).expect("valid JSON");
    serde_json::to_string_pretty(&value).expect("printable")
}

#[test]
fn a_snapshot_message_carries_the_whole_cluster_after_its_type_and_seq() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let state = lock_state(&feed.state);
    let text = json::snapshot_message(&state, 41);
    assert!(
        text.starts_with(r#"{"type":"snapshot","seq":41,"#),
        "{text}"
    );
    insta::assert_snapshot!(pretty(&text));
}

#[test]
fn a_diff_message_carries_only_what_changed() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let mut page = follow(&feed);
    feed.done(13, 0);
    feed.begin(17, 2);
    feed.local_done(18);
    let text = publish(&feed, &mut page, 42).expect("something changed");
    assert!(text.starts_with(r#"{"type":"diff","seq":42,"#), "{text}");
    insta::assert_snapshot!(pretty(&text));
}

#[test]
fn a_host_leaving_is_sent_offline_with_its_jobs_ended_and_its_links_zeroed() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let mut page = follow(&feed);
    feed.host_offline(3);
    let text = publish(&feed, &mut page, 7).expect("something changed");
    let diff: Value = serde_json::from_str(&text).expect("valid JSON");
    let host = diff["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["id"] == 3))
        .expect("remote2 is in the diff");
    assert_eq!(host["online"], false);
    assert_eq!(
        diff["links"],
        serde_json::json!([{"from": 1, "to": 3, "active": 0}])
    );
    let ended: Vec<&Value> = diff["jobs_done"].as_array().into_iter().flatten().collect();
    assert_eq!(ended.len(), 2, "remote2's two jobs end with it: {text}");
    assert!(
        ended.iter().all(|j| j["state"] == "cut_short"
            && j["reason"] == "host_left"
            && j.get("server").is_none()),
        "the client has them: only what changed"
    );
}

#[test]
fn hosts_and_jobs_already_sent_are_sent_as_their_changed_fields_and_a_new_reader_starts_afresh() {
    let mut feed = Feed::new();
    let mut page = follow(&feed);
    feed.small_cluster();
    let publish = |feed: &Feed, page: &mut Delta, seq| -> Value {
        let text = publish(feed, page, seq).expect("a diff");
        serde_json::from_str(&text).expect("valid JSON")
    };
    let first = publish(&feed, &mut page, 1);
    let hosts = first["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3);
    assert!(hosts.iter().all(|h| h["name"].is_string()), "new: whole");

    feed.host(2, "remote1", 2, false, 777);
    feed.request(40, 1, "src/x.c");
    let second = publish(&feed, &mut page, 2);
    assert_eq!(
        second["hosts"],
        serde_json::json!([{"id": 1, "pending": 2, "submitted": 9}, {"id": 2, "load": 777}])
    );
    assert_eq!(second["jobs"][0]["file"], "src/x.c", "a new job: whole");

    // A job the clients have: what changed, never its file.
    feed.begin(40, 2);
    let begun = &publish(&feed, &mut page, 3)["jobs"][0];
    assert_eq!(
        (
            begun["id"].clone(),
            begun["state"].clone(),
            begun["server"].clone()
        ),
        (40.into(), "compiling".into(), 2.into())
    );
    assert!(
        begun.get("file").is_none() && begun.get("client").is_none(),
        "{begun}"
    );
    feed.done(40, 0);
    let ended = &publish(&feed, &mut page, 4)["jobs_done"][0];
    assert_eq!(
        (ended["state"].clone(), ended["exit_code"].clone()),
        ("finished".into(), 0.into())
    );
    assert!(
        ended["real_ms"].is_u64() && ended.get("file").is_none(),
        "{ended}"
    );

    // Nobody listened for a while: a page that follows again starts from a
    // snapshot of the state then, and is sent only what changed after it.
    page.unfollow(&mut lock_state(&feed.state));
    feed.host(2, "remote1", 2, false, 778);
    let mut page = follow(&feed);
    feed.host(2, "remote1", 2, false, 779);
    let fifth = publish(&feed, &mut page, 5);
    assert_eq!(fifth["hosts"], serde_json::json!([{"id": 2, "load": 779}]));
}

#[test]
fn a_job_that_takes_over_the_record_of_a_published_one_goes_out_whole() {
    // With a history of one, job 42 is filed where job 40 was.
    let mut feed = Feed::with_history(1);
    feed.small_cluster();
    let mut page = follow(&feed);
    let publish = |feed: &Feed, page: &mut Delta, seq| -> Value {
        let text = publish(feed, page, seq).expect("a diff");
        serde_json::from_str(&text).expect("valid JSON")
    };
    feed.request(40, 1, "src/a.c");
    assert_eq!(publish(&feed, &mut page, 2)["jobs"][0]["file"], "src/a.c");
    feed.begin(40, 2);
    feed.done(40, 0);
    feed.remote_job(41, 1, 2, "src/b.c", 0);
    feed.request(42, 1, "src/c.c");
    let diff = publish(&feed, &mut page, 3);
    let job = diff["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == 42))
        .expect("job 42");
    assert_eq!(
        (&job["file"], &job["client"]),
        (&"src/c.c".into(), &1.into())
    );
}

#[test]
fn no_change_gives_no_diff() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let mut page = follow(&feed);
    assert_eq!(publish(&feed, &mut page, 1), None);
}

#[test]
fn the_hosts_api_lists_every_host_by_id() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let hosts: Value = serde_json::from_str(&json::hosts(&lock_state(&feed.state))).expect("JSON");
    let names: Vec<&str> = hosts
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(names, ["localice", "remote1", "remote2"]);
}

fn job_ids(feed: &Feed, state: Option<&str>, host: Option<&str>, limit: Option<&str>) -> Vec<u64> {
    let query = JobQuery::parse(state, host, limit).expect("a valid query");
    let jobs: Value =
        serde_json::from_str(&json::jobs(&lock_state(&feed.state), &query)).expect("JSON");
    jobs.as_array()
        .expect("a list")
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .collect()
}

#[test]
fn the_jobs_api_filters_by_state_host_and_limit_newest_first() {
    let mut feed = Feed::new();
    feed.small_cluster();
    assert_eq!(job_ids(&feed, Some("failed"), None, None), [11]);
    assert_eq!(job_ids(&feed, Some("history"), None, None), [12, 11, 10]);
    assert_eq!(job_ids(&feed, Some("waiting,local"), None, None), [18, 17]);
    assert_eq!(
        job_ids(&feed, Some("compiling"), Some("remote1"), None),
        [14, 13]
    );
    assert_eq!(job_ids(&feed, None, Some("2"), None), [14, 13, 10]);
    assert_eq!(job_ids(&feed, Some("active"), None, Some("2")), [18, 17]);
    assert_eq!(
        job_ids(&feed, None, Some("nobody"), None),
        Vec::<u64>::new()
    );
}

#[test]
fn the_jobs_api_refuses_an_unknown_state_or_a_bad_limit() {
    assert_eq!(
        JobQuery::parse(Some("done"), None, None),
        Err(QueryError::State("done".into()))
    );
    assert_eq!(
        JobQuery::parse(None, None, Some("ten")),
        Err(QueryError::Limit("ten".into()))
    );
    assert!(QueryError::State("done".into())
        .to_string()
        .starts_with("unknown job state \"done\""));
}
