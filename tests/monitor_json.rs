//! The JSON of `State::snapshot` and of the page's diffs (`Delta`), pinned with insta, and
//! the example in `docs/json.md` checked against the real output so the
//! document cannot drift from the code.

mod support;

use icewatch::monitor::{State, StateOptions};
use icewatch::protocol::stats::OFFLINE;
use icewatch::protocol::{JobDone, Language, Message};
use icewatch::publisher::delta::{Delta, Update};
use serde_json::Value;

const T0: u64 = 1_700_000_000_000;

fn done(job_id: u32, exit_code: u32) -> Message<'static> {
    Message::MonJobDone(JobDone {
        job_id,
        exit_code,
        real_ms: 812,
        user_ms: 640,
        sys_ms: 95,
        page_faults: 3,
        in_compressed: 14_021,
        in_uncompressed: 61_003,
        out_compressed: 2_210,
        out_uncompressed: 5_120,
        flags: 0,
        client_count: 0,
    })
}

/// Three hosts in the middle of a build: compiling, waiting, local,
/// finished and failed jobs, a job the scheduler gave back to its submitter.
fn mid_build() -> State {
    let mut st = State::new(StateOptions::default());
    st.scheduler_connected("127.0.0.1:8765".into(), 43, T0);
    let localice = "Name:localice\nIP:127.0.0.1\nMaxJobs:2\nNoRemote:true\nPlatform:x86_64\n\
                    Version:43\nFeatures:env_xz env_zstd\nSpeed:0.000000\nLoad:232\n\
                    LoadAvg1:320\nLoadAvg5:93\nLoadAvg10:29\nFreeMem:23631\n";
    let remote1 = "Name:remote1\nIP:10.0.0.11\nMaxJobs:2\nNoRemote:false\nPlatform:x86_64\n\
                   Version:43\nFeatures:env_xz env_zstd\nSpeed:12.500000\nLoad:1000\n";
    let remote2 = "Name:remote2\nIP:10.0.0.12\nMaxJobs:3\nNoRemote:false\nPlatform:aarch64\n\
                   Version:44\nFeatures:env_zstd\nSpeed:8.250000\nLoad:500\n";
    let steps: Vec<(u64, Message<'_>)> = vec![
        (0, Message::mon_stats(1, localice)),
        (0, Message::mon_stats(2, remote1)),
        (0, Message::mon_stats(3, remote2)),
        (100, Message::mon_get_cs(5, 1, "src/parse.c", Language::C)),
        (120, Message::mon_job_begin(5, 3, 0)),
        (900, done(5, 0)),
        (
            1_000,
            Message::mon_get_cs(6, 1, "src/broken.c", Language::C),
        ),
        (1_010, Message::mon_job_begin(6, 3, 0)),
        (1_200, done(6, 1)),
        (1_300, Message::mon_local_job_begin(7, 1, 0, "src/broken.o")),
        (1_700, Message::job_local_done(7)),
        (
            2_000,
            Message::mon_get_cs(8, 1, "src/main.cpp", Language::CXX),
        ),
        (2_050, Message::mon_job_begin(8, 2, 0)),
        (2_100, Message::mon_get_cs(9, 1, "src/util.c", Language::C)),
        (2_150, Message::mon_job_begin(9, 1, 0)),
        (2_200, Message::mon_get_cs(10, 1, "src/io.c", Language::C)),
        (2_300, Message::mon_local_job_begin(11, 1, 0, "src/gen.o")),
    ];
    for (dt, msg) in &steps {
        st.apply(msg, T0 + dt);
    }
    st.check_invariants();
    st
}

#[test]
fn the_snapshot_json_is_pinned() {
    let st = mid_build();
    insta::assert_json_snapshot!("snapshot_mid_build", st.snapshot());
}

#[test]
fn the_example_in_docs_json_md_is_what_the_code_prints() {
    let doc = include_str!("../docs/json.md");
    let start = doc
        .find("<!-- example: snapshot -->")
        .expect("docs/json.md marks its example");
    let block = &doc[start..];
    let open = block.find("```json\n").unwrap() + "```json\n".len();
    let close = open + block[open..].find("\n```").unwrap();
    let documented: Value = serde_json::from_str(&block[open..close]).unwrap();
    let actual = serde_json::to_value(mid_build().snapshot()).unwrap();
    assert_eq!(
        documented,
        actual,
        "docs/json.md is out of date; the code prints:\n{}",
        serde_json::to_string_pretty(&actual).unwrap()
    );
}

#[test]
fn diffs_carry_only_what_changed_and_are_pinned() {
    let mut st = mid_build();
    // A page that read the snapshot of `mid_build`.
    let mut page = Delta::follow(&mut st);
    // job 8 ends, job 10 gets a server, remote2 leaves.
    st.apply(&done(8, 0), T0 + 3_000);
    st.apply(&Message::mon_job_begin(10, 2, 0), T0 + 3_100);
    st.apply(&Message::mon_stats(3, OFFLINE), T0 + 3_200);
    let Update::Diff(diff) = page.update(&mut st) else {
        panic!("a diff")
    };
    insta::assert_json_snapshot!("diff_job_ends_host_leaves", diff);
    // Nothing more happened.
    assert!(matches!(page.update(&mut st), Update::Nothing));
    // The scheduler goes away.
    st.scheduler_lost(
        "scheduler 127.0.0.1:8765 closed the connection".into(),
        T0 + 4_000,
    );
    let Update::Diff(diff) = page.update(&mut st) else {
        panic!("a diff")
    };
    insta::assert_json_snapshot!("diff_scheduler_lost", diff);
}
