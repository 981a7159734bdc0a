//! Property tests of the codec (`src/protocol/`): for every variant of
//! `Message` and every protocol version from 21 to 44, encoding then decoding
//! gives back the message less the fields that version does not carry, and
//! the decoded message re-encodes to the very same bytes; a strict prefix of a
//! frame is never accepted; arbitrary bytes never panic.

use bytes::BytesMut;
use icewatch::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
use icewatch::protocol::stats::HostStats;
use icewatch::protocol::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const VERSIONS: std::ops::RangeInclusive<u32> = MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION;

/// Everything a generated message borrows: numbers, strings (arbitrary
/// bytes, NULs and non-UTF-8 included), string lists and environments.
#[derive(Clone, Debug)]
struct Seed {
    n: [u32; 12],
    s: [Vec<u8>; 8],
    list1: Vec<Vec<u8>>,
    list2: Vec<Vec<u8>>,
    envs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A type code this codec does not decode (0x41 `UNKNOWN` or outside
    /// 0x42..=0x60).
    unknown_ty: u32,
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn seed() -> impl Strategy<Value = Seed> {
    let unknown = prop_oneof![
        Just(0x41u32),
        any::<u32>().prop_map(|t| if (0x42..=0x60).contains(&t) {
            t + 0x100
        } else {
            t
        }),
    ];
    (
        prop::array::uniform12(any::<u32>()),
        prop::array::uniform8(bytes(24)),
        prop::collection::vec(bytes(12), 0..4),
        prop::collection::vec(bytes(12), 0..4),
        prop::collection::vec((bytes(12), bytes(12)), 0..3),
        unknown,
    )
        .prop_map(|(n, s, list1, list2, envs, unknown_ty)| Seed {
            n,
            s,
            list1,
            list2,
            envs,
            unknown_ty,
        })
}

/// The seed's lists as the borrowed slices `List::from_slice` wants.
struct Lists<'a> {
    l1: Vec<&'a [u8]>,
    l2: Vec<&'a [u8]>,
    envs: Vec<Environment<'a>>,
}

impl Seed {
    fn lists(&self) -> Lists<'_> {
        Lists {
            l1: self.list1.iter().map(Vec::as_slice).collect(),
            l2: self.list2.iter().map(Vec::as_slice).collect(),
            envs: self
                .envs
                .iter()
                .map(|(platform, version)| Environment { platform, version })
                .collect(),
        }
    }
}

/// How many variants `Message` has; `variant_index` keeps it honest.
const KINDS: usize = 32;

/// A position for every variant, with no wildcard arm: a new variant breaks
/// the build here until the generator learns it.
fn variant_index(m: &Message<'_>) -> usize {
    match m {
        Message::Ping => 0,
        Message::End => 1,
        Message::Timeout => 2,
        Message::GetNativeEnv(_) => 3,
        Message::NativeEnv(_) => 4,
        Message::GetCs(_) => 5,
        Message::UseCs(_) => 6,
        Message::CompileFile(_) => 7,
        Message::FileChunk(_) => 8,
        Message::CompileResult(_) => 9,
        Message::JobBegin(_) => 10,
        Message::JobDone(_) => 11,
        Message::JobLocalBegin(_) => 12,
        Message::JobLocalDone(_) => 13,
        Message::Login(_) => 14,
        Message::Stats(_) => 15,
        Message::MonLogin => 16,
        Message::MonGetCs(_) => 17,
        Message::MonJobBegin(_) => 18,
        Message::MonJobDone(_) => 19,
        Message::MonLocalJobBegin(_) => 20,
        Message::MonStats(_) => 21,
        Message::EnvTransfer(_) => 22,
        Message::Text(_) => 23,
        Message::StatusText(_) => 24,
        Message::GetInternals => 25,
        Message::CsConf(_) => 26,
        Message::VerifyEnv(_) => 27,
        Message::VerifyEnvResult(_) => 28,
        Message::BlacklistHostEnv(_) => 29,
        Message::NoCs(_) => 30,
        Message::Unknown { .. } => 31,
    }
}

fn get_cs<'a>(seed: &'a Seed, lists: &'a Lists<'a>) -> GetCs<'a> {
    let (n, s) = (&seed.n, &seed.s);
    GetCs {
        environments: EnvList::from_slice(&lists.envs),
        filename: &s[0],
        lang: Language(n[0]),
        count: n[1],
        target: &s[1],
        arg_flags: n[2],
        client_id: n[3],
        preferred_host: &s[2],
        ignore_unverified: n[4],
        minimal_host_version: n[5],
        client_count: n[6],
        required_features: n[7],
        niceness: n[8],
    }
}

fn job_done(n: &[u32; 12]) -> JobDone {
    JobDone {
        job_id: n[0],
        exit_code: n[1],
        real_ms: n[2],
        user_ms: n[3],
        sys_ms: n[4],
        page_faults: n[5],
        in_compressed: n[6],
        in_uncompressed: n[7],
        out_compressed: n[8],
        out_uncompressed: n[9],
        flags: n[10],
        client_count: n[11],
    }
}

/// The message of variant `kind` with every field (of every version) filled
/// from the seed.
fn build<'a>(kind: usize, seed: &'a Seed, lists: &'a Lists<'a>) -> Message<'a> {
    let (n, s) = (&seed.n, &seed.s);
    let msg = match kind {
        0 => Message::Ping,
        1 => Message::End,
        2 => Message::Timeout,
        3 => Message::GetNativeEnv(GetNativeEnv {
            compiler: &s[0],
            extra_files: StrList::from_slice(&lists.l1),
            compression: &s[1],
        }),
        4 => Message::NativeEnv(NativeEnv {
            native_version: &s[0],
        }),
        5 => Message::GetCs(get_cs(seed, lists)),
        6 => Message::UseCs(UseCs {
            job_id: n[0],
            port: n[1],
            hostname: &s[0],
            host_platform: &s[1],
            got_env: n[2],
            client_id: n[3],
            matched_job_id: n[4],
        }),
        7 => Message::CompileFile(CompileFile {
            lang: Language(n[0]),
            job_id: n[1],
            flags: StrList::from_slice(&lists.l1),
            rest_flags: StrList::from_slice(&lists.l2),
            environment_version: &s[0],
            target_platform: &s[1],
            compiler_name: &s[2],
            input_file: &s[3],
            working_directory: &s[4],
            output_file: &s[5],
            dwarf_fission: n[2],
        }),
        8 => Message::FileChunk(FileChunk {
            uncompressed_len: n[0],
            compression: n[1],
            data: &s[0],
        }),
        9 => Message::CompileResult(CompileResult {
            err: &s[0],
            out: &s[1],
            status: n[0],
            was_out_of_memory: n[1],
            have_dwo_file: n[2],
        }),
        10 => Message::JobBegin(JobBegin {
            job_id: n[0],
            start_time: n[1],
            client_count: n[2],
        }),
        11 => Message::JobDone(job_done(n)),
        12 => Message::JobLocalBegin(JobLocalBegin {
            start_time: n[0],
            output_file: &s[0],
            id: n[1],
            full_job: n[2],
        }),
        13 => Message::JobLocalDone(JobLocalDone { job_id: n[0] }),
        14 => Message::Login(Login {
            port: n[0],
            max_jobs: n[1],
            environments: EnvList::from_slice(&lists.envs),
            node_name: &s[0],
            host_platform: &s[1],
            chroot_possible: n[2],
            no_remote: n[3],
            features: n[4],
        }),
        15 => Message::Stats(Stats {
            load: n[0],
            load_avg1: n[1],
            load_avg5: n[2],
            load_avg10: n[3],
            free_mem: n[4],
        }),
        16 => Message::MonLogin,
        17 => Message::MonGetCs(MonGetCs {
            request: get_cs(seed, lists),
            job_id: n[9],
            client_id: n[10],
        }),
        18 => Message::MonJobBegin(MonJobBegin {
            job_id: n[0],
            start_time: n[1],
            host_id: n[2],
        }),
        19 => Message::MonJobDone(job_done(n)),
        20 => Message::MonLocalJobBegin(MonLocalJobBegin {
            host_id: n[0],
            job_id: n[1],
            start_time: n[2],
            file: &s[0],
        }),
        21 => Message::MonStats(MonStats {
            host_id: n[0],
            text: &s[0],
        }),
        22 => Message::EnvTransfer(EnvTransfer {
            name: &s[0],
            target: &s[1],
        }),
        23 => Message::Text(&s[0]),
        24 => Message::StatusText(StatusText { text: &s[0] }),
        25 => Message::GetInternals,
        26 => Message::CsConf(CsConf {
            max_scheduler_pong: n[0],
            max_scheduler_ping: n[1],
            bench_source: &s[0],
        }),
        27 => Message::VerifyEnv(VerifyEnv {
            environment: &s[0],
            target: &s[1],
        }),
        28 => Message::VerifyEnvResult(VerifyEnvResult { ok: n[0] }),
        29 => Message::BlacklistHostEnv(BlacklistHostEnv {
            environment: &s[0],
            target: &s[1],
            hostname: &s[2],
        }),
        30 => Message::NoCs(NoCs {
            job_id: n[0],
            client_id: n[1],
        }),
        31 => Message::Unknown {
            ty: MsgType(seed.unknown_ty),
            body: &s[0],
        },
        _ => unreachable!("kind {kind} >= KINDS"),
    };
    assert_eq!(variant_index(&msg), kind);
    msg
}

/// `GET_CS` as a peer of `version` sees it: the fields that version does not
/// carry are zero or empty (icecream's `GetCSMsg::fill_from_channel`).
fn get_cs_at(mut m: GetCs<'_>, v: u32) -> GetCs<'_> {
    if v < 22 {
        m.preferred_host = b"";
    }
    if v < 31 {
        m.ignore_unverified = 0;
    }
    if v < 34 {
        m.minimal_host_version = 0;
    }
    if v < 39 {
        m.client_count = 0;
    }
    if v < 42 {
        m.required_features = 0;
    }
    if v < 43 {
        m.niceness = 0;
    }
    m
}

fn job_done_at(mut m: JobDone, v: u32) -> JobDone {
    if v < 39 {
        m.client_count = 0;
    }
    m
}

/// The message as it must come back after a trip at `version`: fields absent
/// at that version zeroed, read off each `parse_*` in `src/protocol/` and
/// checked against icecream's `services/comm.cpp`. No wildcard arm, so a new
/// variant must be thought about here.
fn at_version(m: Message<'_>, v: u32) -> Message<'_> {
    match m {
        Message::GetNativeEnv(mut m) => {
            if v < 32 {
                m.compiler = b"";
                m.extra_files = StrList::default();
            }
            if v < 42 {
                m.compression = b"";
            }
            Message::GetNativeEnv(m)
        }
        Message::GetCs(m) => Message::GetCs(get_cs_at(m, v)),
        Message::UseCs(mut m) => {
            if v < 28 {
                m.matched_job_id = 0;
            }
            Message::UseCs(m)
        }
        Message::CompileFile(mut m) => {
            if v >= 41 {
                m.rest_flags = StrList::default();
            }
            if v < 30 {
                m.compiler_name = b"";
            }
            if v < 34 {
                m.input_file = b"";
                m.working_directory = b"";
            }
            if v < 35 {
                m.output_file = b"";
                m.dwarf_fission = 0;
            }
            Message::CompileFile(m)
        }
        Message::FileChunk(mut m) => {
            if v < 40 {
                m.compression = COMPRESSION_LZO;
            }
            Message::FileChunk(m)
        }
        Message::CompileResult(mut m) => {
            if v < 35 {
                m.have_dwo_file = 0;
            }
            Message::CompileResult(m)
        }
        Message::JobBegin(mut m) => {
            if v < 39 {
                m.client_count = 0;
            }
            Message::JobBegin(m)
        }
        Message::JobDone(m) => Message::JobDone(job_done_at(m, v)),
        Message::MonJobDone(m) => Message::MonJobDone(job_done_at(m, v)),
        Message::JobLocalBegin(mut m) => {
            if v < 44 {
                m.full_job = 0;
            }
            Message::JobLocalBegin(m)
        }
        Message::Login(mut m) => {
            if v < 26 {
                m.no_remote = 0;
            }
            if v < 42 {
                m.features = 0;
            }
            Message::Login(m)
        }
        Message::MonGetCs(mut m) => {
            m.request = if v >= 29 {
                GetCs {
                    filename: m.request.filename,
                    lang: m.request.lang,
                    ..GetCs::default()
                }
            } else {
                get_cs_at(m.request, v)
            };
            Message::MonGetCs(m)
        }
        m @ (Message::Ping
        | Message::End
        | Message::Timeout
        | Message::NativeEnv(_)
        | Message::JobLocalDone(_)
        | Message::Stats(_)
        | Message::MonLogin
        | Message::MonJobBegin(_)
        | Message::MonLocalJobBegin(_)
        | Message::MonStats(_)
        | Message::EnvTransfer(_)
        | Message::Text(_)
        | Message::StatusText(_)
        | Message::GetInternals
        | Message::CsConf(_)
        | Message::VerifyEnv(_)
        | Message::VerifyEnvResult(_)
        | Message::BlacklistHostEnv(_)
        | Message::NoCs(_)
        | Message::Unknown { .. }) => m,
    }
}

/// Whether any body is a valid body of this type (its body is kept raw).
fn takes_any_body(m: &Message<'_>) -> bool {
    matches!(m, Message::Text(_) | Message::Unknown { .. })
}

fn encode(m: &Message<'_>, v: u32) -> BytesMut {
    let mut out = BytesMut::new();
    m.encode(v, &mut out);
    out
}

/// Decodes every frame of `input` until the first error, re-encoding what
/// decodes: re-encoding is stable (decoding the re-encoded frame gives the
/// same message, and encoding that gives the same bytes).
fn decode_stream_stably(mut input: &[u8], v: u32) {
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        if let Ok(msg) = Message::decode(raw.ty, raw.body, v) {
            assert_eq!(msg.ty(), raw.ty);
            let once = encode(&msg, v);
            let (_, raw2) = parse_frame(&once, MAX_MSG_SIZE).expect("re-encoded frame");
            let again = Message::decode(raw2.ty, raw2.body, v).expect("re-encoded body");
            assert_eq!(again, msg);
            assert_eq!(encode(&again, v), once);
            if let Message::MonStats(stats) = msg {
                let _ = stats.stats();
            }
        }
        input = rest;
    }
}

#[test]
fn the_generator_makes_every_variant_and_every_type_code() {
    let seed = Seed {
        n: [0; 12],
        s: Default::default(),
        list1: vec![],
        list2: vec![],
        envs: vec![],
        unknown_ty: 0x41,
    };
    let lists = seed.lists();
    let kinds: Vec<Message<'_>> = (0..KINDS).map(|k| build(k, &seed, &lists)).collect();
    let indices: BTreeSet<usize> = kinds.iter().map(variant_index).collect();
    assert_eq!(indices, (0..KINDS).collect());
    let codes: BTreeSet<MsgType> = kinds.iter().map(Message::ty).collect();
    assert_eq!(codes, MsgType::ALL.iter().copied().collect());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encoding_then_decoding_is_the_identity_at_every_version(seed in seed()) {
        let lists = seed.lists();
        for kind in 0..KINDS {
            let msg = build(kind, &seed, &lists);
            for v in VERSIONS {
                let frame = encode(&msg, v);
                let (rest, raw) = parse_frame(&frame, MAX_MSG_SIZE).unwrap();
                prop_assert!(rest.is_empty());
                prop_assert_eq!(raw.ty, msg.ty());
                let back = Message::decode(raw.ty, raw.body, v)
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(&back, &at_version(msg.clone(), v), "v{}", v);
                // What was decoded re-encodes to the very same bytes.
                prop_assert_eq!(&encode(&back, v)[..], &frame[..], "v{}", v);
            }
        }
    }

    #[test]
    fn job_done_decodes_the_same_under_both_type_codes(seed in seed(), v in VERSIONS) {
        let done = job_done(&seed.n);
        let frame = encode(&Message::JobDone(done), v);
        let (_, raw) = parse_frame(&frame, MAX_MSG_SIZE).unwrap();
        let expected = job_done_at(done, v);
        prop_assert_eq!(
            Message::decode(MsgType::JOB_DONE, raw.body, v),
            Ok(Message::JobDone(expected))
        );
        prop_assert_eq!(
            Message::decode(MsgType::MON_JOB_DONE, raw.body, v),
            Ok(Message::MonJobDone(expected))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn every_strict_prefix_of_a_frame_is_incomplete_or_invalid(seed in seed()) {
        let lists = seed.lists();
        for kind in 0..KINDS {
            let msg = build(kind, &seed, &lists);
            for v in VERSIONS {
                let frame = encode(&msg, v);
                // The envelope parser asks for exactly the missing bytes.
                for n in 0..frame.len() {
                    let needed = if n < 4 { 4 - n } else { frame.len() - n };
                    prop_assert_eq!(
                        parse_frame(&frame[..n], MAX_MSG_SIZE),
                        Err(FrameError::Incomplete { needed })
                    );
                }
                // A frame whose length word was cut short: the envelope is
                // whole, the body is not, so the body is invalid.
                let body = &frame[8..];
                for n in 0..body.len() {
                    let mut cut = BytesMut::from(&frame[..8 + n]);
                    cut[..4].copy_from_slice(&(4 + n as u32).to_be_bytes());
                    let (rest, raw) = parse_frame(&cut, MAX_MSG_SIZE).unwrap();
                    prop_assert!(rest.is_empty());
                    let decoded = Message::decode(raw.ty, raw.body, v);
                    if takes_any_body(&msg) {
                        prop_assert!(decoded.is_ok());
                    } else {
                        let err = decoded.err().ok_or_else(|| TestCaseError::fail(
                            format!("{} v{v}: a {n}-byte prefix of a {}-byte body was accepted",
                                    msg.ty(), body.len())))?;
                        prop_assert_eq!((err.ty, err.version, err.len), (msg.ty(), v, n));
                        prop_assert!(err.offset <= n);
                    }
                }
                // One byte too many is invalid as well.
                let mut long = body.to_vec();
                long.push(0);
                let decoded = Message::decode(msg.ty(), &long, v);
                prop_assert_eq!(decoded.is_ok(), takes_any_body(&msg));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_streams_never_panic(stream in bytes(512), v in VERSIONS) {
        decode_stream_stably(&stream, v);
    }

    #[test]
    fn random_bodies_of_every_type_never_panic(body in bytes(256)) {
        for ty in 0x40..=0x61 {
            for v in VERSIONS {
                if let Ok(msg) = Message::decode(MsgType(ty), &body, v) {
                    let frame = encode(&msg, v);
                    decode_stream_stably(&frame, v);
                }
            }
        }
        let _ = HostStats::parse(&body);
    }

    #[test]
    fn a_mutated_valid_frame_never_panics(
        seed in seed(),
        kind in 0..KINDS,
        v in VERSIONS,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let lists = seed.lists();
        let mut frame = encode(&build(kind, &seed, &lists), v);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        decode_stream_stably(&frame, v);
    }

    #[test]
    fn random_stats_text_never_panics(text in prop::collection::vec(
        prop_oneof![
            Just(b':'), Just(b'\n'), Just(b'0'), Just(b'9'), Just(b'.'),
            any::<u8>(),
        ],
        0..200,
    )) {
        let _ = HostStats::parse(&text);
        let mut lines = Vec::new();
        for key in ["Name", "IP", "MaxJobs", "NoRemote", "Speed", "Load", "State", "FreeMem"] {
            lines.extend_from_slice(key.as_bytes());
            lines.push(b':');
            lines.extend_from_slice(&text);
            lines.push(b'\n');
        }
        let _ = HostStats::parse(&lines);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn discovery_replies_round_trip_and_random_datagrams_never_panic(
        request in any::<u8>(),
        version in any::<u32>(),
        start_time in any::<u64>(),
        netname in bytes(300),
        datagram in bytes(300),
    ) {
        use icewatch::protocol::discovery::*;
        let info = SchedulerInfo { version, start_time, netname: &netname };
        let reply = discovery_reply(request, &info);
        let back = parse_discovery_reply(&reply, request)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        // The name stops at its first NUL and is cut to the room the layout has.
        let name = netname.split(|&b| b == 0).next().unwrap_or_default();
        let room = if reply.len() == REPLY_LEN_OLD_1 { 14 } else { reply.len() - 14 };
        prop_assert_eq!(back.netname, &name[..name.len().min(room)]);
        if request >= 33 {
            prop_assert_eq!((back.version, back.start_time), (version, start_time));
        } else {
            prop_assert_eq!((back.version, back.start_time), (32, 0));
        }
        let _ = parse_discovery_reply(&datagram, request);
        let _ = parse_scheduler_announcement(&datagram);
        let _ = parse_discovery_request(&datagram);
        if let Some(mut announcement) = datagram.get(..REPLY_LEN).map(<[u8]>::to_vec) {
            announcement[..3].copy_from_slice(b"ICF");
            prop_assert!(parse_scheduler_announcement(&announcement).is_some());
        }
    }
}
