//! The text inside `MON_STATS`: `Key:Value` lines describing a host.
//!
//! Every `MON_STATS` the scheduler sends carries the host's whole
//! description: Name, IP, MaxJobs, NoRemote, Platform, Version, Features,
//! Speed and Load, and when it follows a daemon's `STATS` report also
//! LoadAvg1, LoadAvg5, LoadAvg10 (×1000) and FreeMem (MiB). A text of only
//! `State:Offline` means the host left. Unknown keys are ignored and missing
//! or malformed values stay `None`, so a newer scheduler does not break
//! parsing. Values borrow from the text; nothing is allocated.
//!
//! ```
//! use icewatch::protocol::stats::HostStats;
//!
//! let host = HostStats::parse(b"Name:remote1\nIP:10.0.0.2\nMaxJobs:4\nNoRemote:false\nLoad:250\n");
//! assert_eq!(host.name, Some(&b"remote1"[..]));
//! assert_eq!((host.max_jobs, host.no_remote, host.load), (Some(4), Some(false), Some(250)));
//! assert_eq!(host.free_mem, None);
//! assert!(HostStats::parse(b"State:Offline\n").offline);
//! ```
//!
//! [`HostStats::to_text`] writes the text back, as a scheduler does: what a
//! stand-in for a scheduler sends.
//!
//! ```
//! use icewatch::protocol::stats::{HostStats, OFFLINE};
//!
//! let report = HostStats { load: Some(250), free_mem: Some(2048), ..HostStats::default() };
//! assert_eq!(report.to_text(), b"Load:250\nFreeMem:2048\n");
//! assert_eq!(HostStats::parse(&report.to_text()), report);
//! assert_eq!(HostStats { offline: true, ..HostStats::default() }.to_text(), OFFLINE);
//! ```

use serde::{Serialize, Serializer};
use std::io::Write;

/// The whole text of a host that left the cluster.
pub const OFFLINE: &[u8] = b"State:Offline\n";

/// Typed view of a `MON_STATS` text; parsing allocates nothing.
///
/// It serializes (serde) as the text's keys and their typed values, in
/// the order a scheduler writes them, leaving out those without a value:
/// `{"Name":"localice","MaxJobs":2,"NoRemote":true,...}`, and
/// `{"State":"Offline"}` for a host that left. Byte strings are shown as
/// UTF-8, invalid bytes replaced by U+FFFD.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostStats<'a> {
    /// `Name`: the daemon's node name.
    #[serde(serialize_with = "lossy", skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a [u8]>,
    /// `IP`: the address the scheduler sees.
    #[serde(rename = "IP")]
    #[serde(serialize_with = "lossy", skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a [u8]>,
    /// `MaxJobs`: slots for compile jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// `NoRemote`: takes no jobs from other hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_remote: Option<bool>,
    /// `Platform`, e.g. `x86_64`.
    #[serde(serialize_with = "lossy", skip_serializing_if = "Option::is_none")]
    pub platform: Option<&'a [u8]>,
    /// `Version`: the daemon's protocol version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `Features`, space separated (`env_xz env_zstd`).
    #[serde(serialize_with = "lossy", skip_serializing_if = "Option::is_none")]
    pub features: Option<&'a [u8]>,
    /// `Speed`: the scheduler's speed estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// `Load`: 0 (idle) to 1000 (full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<u32>,
    /// `LoadAvg1`, ×1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_avg1: Option<u32>,
    /// `LoadAvg5`, ×1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_avg5: Option<u32>,
    /// `LoadAvg10`, ×1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_avg10: Option<u32>,
    /// `FreeMem`, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_mem: Option<u32>,
    /// `State:Offline`: the host left the cluster.
    #[serde(
        rename = "State",
        serialize_with = "state",
        skip_serializing_if = "is_online"
    )]
    pub offline: bool,
}

/// A byte string as UTF-8 text, invalid bytes replaced.
fn lossy<S: Serializer>(value: &Option<&[u8]>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(bytes) => serializer.collect_str(&String::from_utf8_lossy(bytes)),
        None => serializer.serialize_none(),
    }
}

/// `State`, as the scheduler writes it: only ever `Offline`.
fn state<S: Serializer>(_offline: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("Offline")
}

fn is_online(offline: &bool) -> bool {
    !offline
}

impl<'a> HostStats<'a> {
    /// Parses the text; never fails (bad values read as `None`).
    #[inline]
    pub fn parse(text: &'a [u8]) -> HostStats<'a> {
        let mut s = HostStats::default();
        let mut rest = text;
        // A scheduler writes its keys in one order: each line is first
        // tried as the key that follows the previous one.
        let mut next = 0;
        while !rest.is_empty() {
            if let Some((field, after)) = expected_key(rest, next) {
                rest = s.store(field, after);
                next = field as usize + 1;
                continue;
            }
            let (colon, end) = split_line(rest);
            let Some((line, after)) = rest.split_at_checked(end) else {
                break;
            };
            if let Some((key, value)) = colon.and_then(|c| line.split_at_checked(c)) {
                if let Some(field) = s.set(key, value.get(1..).unwrap_or_default()) {
                    next = field as usize + 1;
                }
            }
            rest = after.get(1..).unwrap_or_default();
        }
        s
    }

    /// What a scheduler says of a daemon that just logged in, with the
    /// `name`, `ip`, slots and remote setting given and the rest as an
    /// icecream 1.4 daemon reports itself: `Platform:x86_64`, `Version:43`,
    /// `Features:env_xz env_zstd`, `Speed` 0 (nothing compiled yet) and
    /// `Load` 0. Change any of them with struct update syntax.
    pub fn login<N, I>(name: &'a N, ip: &'a I, max_jobs: u32, no_remote: bool) -> HostStats<'a>
    where
        N: AsRef<[u8]> + ?Sized,
        I: AsRef<[u8]> + ?Sized,
    {
        HostStats {
            name: Some(name.as_ref()),
            ip: Some(ip.as_ref()),
            max_jobs: Some(max_jobs),
            no_remote: Some(no_remote),
            platform: Some(b"x86_64"),
            version: Some(43),
            features: Some(b"env_xz env_zstd"),
            speed: Some(0.0),
            load: Some(0),
            ..HostStats::default()
        }
    }

    /// The text a scheduler sends for these statistics: a `Key:Value` line
    /// for each field that has a value, in the order a scheduler writes
    /// them, `Speed` with six decimals (C's `%f`), and `State:Offline` if
    /// `offline`. [`HostStats::parse`] reads it back (the speed rounded to
    /// six decimals).
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.write_text(&mut out);
        out
    }

    /// [`HostStats::to_text`], appended to `out`.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
            if let Some(value) = value {
                out.extend_from_slice(key);
                out.extend_from_slice(value);
                out.push(b'\n');
            }
        }
        fn shown(out: &mut Vec<u8>, key: &[u8], value: Option<impl std::fmt::Display>) {
            if let Some(value) = value {
                out.extend_from_slice(key);
                // Writing to a vector cannot fail.
                let _ = writeln!(out, "{value}");
            }
        }
        text(out, b"Name:", self.name);
        text(out, b"IP:", self.ip);
        shown(out, b"MaxJobs:", self.max_jobs);
        shown(out, b"NoRemote:", self.no_remote);
        text(out, b"Platform:", self.platform);
        shown(out, b"Version:", self.version);
        text(out, b"Features:", self.features);
        shown(out, b"Speed:", self.speed.map(|s| format!("{s:.6}")));
        shown(out, b"Load:", self.load);
        shown(out, b"LoadAvg1:", self.load_avg1);
        shown(out, b"LoadAvg5:", self.load_avg5);
        shown(out, b"LoadAvg10:", self.load_avg10);
        shown(out, b"FreeMem:", self.free_mem);
        text(out, b"State:", self.offline.then_some(&b"Offline"[..]));
    }

    /// Any line: the key (before its first colon) and its value. Returns
    /// the key's field if it is a known one.
    fn set(&mut self, key: &[u8], value: &'a [u8]) -> Option<Field> {
        let &(_, field) = KEYS
            .iter()
            .find(|(k, _)| k.strip_suffix(b":") == Some(key))?;
        self.set_value(field, value);
        Some(field)
    }

    #[inline]
    fn set_value(&mut self, field: Field, value: &'a [u8]) {
        match field {
            Field::Name => self.name = Some(value),
            Field::Ip => self.ip = Some(value),
            Field::MaxJobs => self.max_jobs = number(value),
            Field::NoRemote => self.no_remote = Some(value == b"true"),
            Field::Platform => self.platform = Some(value),
            Field::Version => self.version = number(value),
            Field::Features => self.features = Some(value),
            Field::Speed => self.speed = decimal(value),
            Field::Load => self.load = number(value),
            Field::LoadAvg1 => self.load_avg1 = number(value),
            Field::LoadAvg5 => self.load_avg5 = number(value),
            Field::LoadAvg10 => self.load_avg10 = number(value),
            Field::FreeMem => self.free_mem = number(value),
            Field::State => self.offline = value == b"Offline",
        }
    }

    /// `field`'s value, which starts `rest` and ends at a newline or at the
    /// end; returns what follows its line. Numbers are read as the line is
    /// scanned.
    #[inline]
    fn store(&mut self, field: Field, rest: &'a [u8]) -> &'a [u8] {
        let slot = match field {
            Field::MaxJobs => &mut self.max_jobs,
            Field::Version => &mut self.version,
            Field::Load => &mut self.load,
            Field::LoadAvg1 => &mut self.load_avg1,
            Field::LoadAvg5 => &mut self.load_avg5,
            Field::LoadAvg10 => &mut self.load_avg10,
            Field::FreeMem => &mut self.free_mem,
            Field::Speed => {
                let (speed, end) = decimal_line(rest);
                self.speed = speed;
                return rest.get(end + 1..).unwrap_or_default();
            }
            _ => {
                let end = line_end(rest);
                let (value, after) = rest.split_at(end);
                self.set_value(field, value);
                return after.get(1..).unwrap_or_default();
            }
        };
        let (value, end) = number_line(rest);
        *slot = value;
        rest.get(end + 1..).unwrap_or_default()
    }
}

/// The keys a scheduler writes, in its order, with their colon.
const KEYS: [(&[u8], Field); 14] = [
    (b"Name:", Field::Name),
    (b"IP:", Field::Ip),
    (b"MaxJobs:", Field::MaxJobs),
    (b"NoRemote:", Field::NoRemote),
    (b"Platform:", Field::Platform),
    (b"Version:", Field::Version),
    (b"Features:", Field::Features),
    (b"Speed:", Field::Speed),
    (b"Load:", Field::Load),
    (b"LoadAvg1:", Field::LoadAvg1),
    (b"LoadAvg5:", Field::LoadAvg5),
    (b"LoadAvg10:", Field::LoadAvg10),
    (b"FreeMem:", Field::FreeMem),
    (b"State:", Field::State),
];

/// A known key, numbered by its place in [`KEYS`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Name,
    Ip,
    MaxJobs,
    NoRemote,
    Platform,
    Version,
    Features,
    Speed,
    Load,
    LoadAvg1,
    LoadAvg5,
    LoadAvg10,
    FreeMem,
    State,
}

/// The first eight bytes of `bytes`, zero-padded.
const fn first_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let mut i = 0;
    while i < 8 && i < bytes.len() {
        word[i] = bytes[i];
        i += 1;
    }
    u64::from_le_bytes(word)
}

/// Per key: its first eight bytes, the mask of those that count, and its
/// last eight bytes (for keys longer than eight).
const KEY_WORDS: [(u64, u64, u64); 14] = {
    let mut words = [(0, 0, 0); 14];
    let mut i = 0;
    while i < KEYS.len() {
        let key = KEYS[i].0;
        let mask = if key.len() >= 8 {
            u64::MAX
        } else {
            (1 << (8 * key.len())) - 1
        };
        let last = if key.len() > 8 {
            let (_, tail) = key.split_at(key.len() - 8);
            first_word(tail)
        } else {
            0
        };
        words[i] = (first_word(key), mask, last);
        i += 1;
    }
    words
};

/// Whether `line` starts with `KEYS[index]`: one or two word compares.
/// Returns the key's field and what follows its colon.
#[inline]
fn expected_key(line: &[u8], index: usize) -> Option<(Field, &[u8])> {
    let (key, field) = *KEYS.get(index)?;
    let (first, mask, last) = *KEY_WORDS.get(index)?;
    let word = u64::from_le_bytes(line.get(..8)?.try_into().ok()?);
    if word & mask != first {
        return None;
    }
    if key.len() > 8 {
        let tail = line.get(key.len() - 8..key.len())?;
        if u64::from_le_bytes(tail.try_into().ok()?) != last {
            return None;
        }
    }
    Some((field, line.get(key.len()..)?))
}

/// A decimal `u32` that ends at a newline or at the end of `text`, read in
/// the same pass that finds where it ends: (the number, where its line
/// ends). Eleven digits or more, or anything but digits, read as `None`.
#[inline]
fn number_line(text: &[u8]) -> (Option<u32>, usize) {
    let mut n: u64 = 0;
    for (i, &b) in text.iter().enumerate() {
        if b.is_ascii_digit() {
            // Eleven digits or more are refused below; stop growing.
            if i < 11 {
                n = n * 10 + u64::from(b - b'0');
            }
            continue;
        }
        if b == b'\n' {
            return (ended_number(n, i), i);
        }
        // Not a number: the line ends at its newline.
        return (None, i + line_end(text.get(i..).unwrap_or_default()));
    }
    (ended_number(n, text.len()), text.len())
}

/// A run of `digits` digits worth `n`, if it is a `u32`.
#[inline]
fn ended_number(n: u64, digits: usize) -> Option<u32> {
    if digits == 0 || digits > 10 {
        return None;
    }
    u32::try_from(n).ok()
}

/// The first line of `text`: where its first colon is (if any) and where
/// it ends (its `\n`, or the end of `text`).
///
/// Lines are a dozen bytes, too short for a vectorised search to pay for
/// its set-up, so both bytes are looked for in one pass, eight bytes at a
/// time.
#[inline]
fn split_line(text: &[u8]) -> (Option<usize>, usize) {
    let mut colon = None;
    let mut at = 0;
    while let Some(word) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let newlines = bytes_equal_to(word, b'\n');
        if colon.is_none() {
            let colons = bytes_equal_to(word, b':');
            // Bits up to the first newline (all bits if there is none).
            let before_end = newlines ^ newlines.wrapping_sub(1);
            if colons & before_end != 0 {
                colon = Some(at + (colons.trailing_zeros() / 8) as usize);
            }
        }
        if newlines != 0 {
            return (colon, at + (newlines.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    for (i, &b) in text.iter().enumerate().skip(at) {
        match b {
            b'\n' => return (colon, i),
            b':' if colon.is_none() => colon = Some(i),
            _ => {}
        }
    }
    (colon, text.len())
}

/// Where the first line of `text` ends: its `\n`, or the end of `text`.
#[inline]
fn line_end(text: &[u8]) -> usize {
    let mut at = 0;
    while let Some(word) = text.get(at..at + 8) {
        let newlines = bytes_equal_to(
            u64::from_le_bytes(word.try_into().unwrap_or_default()),
            b'\n',
        );
        if newlines != 0 {
            return at + (newlines.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = text.get(at..).unwrap_or_default();
    at + tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len())
}

/// The top bit of every byte of `word` that equals `byte`, with no false
/// hits (a borrow-free variant of the classic has-zero-byte trick).
#[inline]
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ u64::from_ne_bytes([byte; 8]);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// A decimal `u32` without allocating; `None` on anything else.
fn number(v: &[u8]) -> Option<u32> {
    number_line(v).0
}

/// Exact powers of ten as `f64` (all below 2^53).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A float as `str::parse::<f64>` reads it.
fn decimal(v: &[u8]) -> Option<f64> {
    decimal_line(v).0
}

/// A float that ends at a newline or at the end of `text`, read as
/// `str::parse::<f64>` reads the whole line, in the pass that finds where
/// the line ends: (the float, where its line ends).
///
/// The scheduler writes `%f` (`12.500000`): with at most 15 digits around
/// one dot the digits form an exact integer `m` below 2^53, and `m / 10^k`
/// is one correctly rounded division of exact values, which is the float
/// `str::parse` gives. Anything else (signs, exponents, `inf`, long
/// numbers) takes `str::parse`.
#[inline]
fn decimal_line(text: &[u8]) -> (Option<f64>, usize) {
    let mut m: u64 = 0;
    let mut digits = 0;
    let mut fraction = None;
    let mut end = text.len();
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                if digits < 16 {
                    m = m * 10 + u64::from(b - b'0');
                }
                digits += 1;
                if let Some(k) = &mut fraction {
                    *k += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            b'\n' => {
                end = i;
                break;
            }
            _ => {
                let end = i + line_end(text.get(i..).unwrap_or_default());
                return (slow_decimal(text.get(..end).unwrap_or_default()), end);
            }
        }
    }
    if digits == 0 || digits > 15 {
        return (slow_decimal(text.get(..end).unwrap_or_default()), end);
    }
    let scale = POW10
        .get(fraction.unwrap_or(0))
        .copied()
        .unwrap_or(f64::NAN);
    (Some(m as f64 / scale), end)
}

#[cold]
fn slow_decimal(v: &[u8]) -> Option<f64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn reads_the_login_burst_of_a_real_scheduler() {
        let text = b"Name:localice\nIP:127.0.0.1\nMaxJobs:2\nNoRemote:true\nPlatform:x86_64\n\
Version:43\nFeatures:env_xz env_zstd\nSpeed:0.000000\nLoad:28\n";
        let s = HostStats::parse(text);
        assert_eq!(s.name, Some(&b"localice"[..]));
        assert_eq!(s.ip, Some(&b"127.0.0.1"[..]));
        assert_eq!(s.max_jobs, Some(2));
        assert_eq!(s.no_remote, Some(true));
        assert_eq!(s.version, Some(43));
        assert_eq!(s.features, Some(&b"env_xz env_zstd"[..]));
        assert_eq!(s.speed, Some(0.0));
        assert_eq!(s.load, Some(28));
        assert_eq!(s.free_mem, None);
        assert!(!s.offline);
    }

    #[test]
    fn offline_unknown_keys_and_bad_numbers() {
        let s = HostStats::parse(b"State:Offline\n");
        assert!(s.offline);
        assert_eq!(s.name, None);
        let s =
            HostStats::parse(b"Colour:blue\nMaxJobs:lots\nLoad:99999999999\nFreeMem:512\nno colon");
        assert_eq!(s.max_jobs, None);
        assert_eq!(s.load, None);
        assert_eq!(s.free_mem, Some(512));
    }

    #[test]
    fn speed_reads_exactly_as_str_parse_does() {
        for text in [
            "0.000000",
            "12.500000",
            "1.",
            ".5",
            ".",
            "",
            "-1.5",
            "+2",
            "1e3",
            "inf",
            "NaN",
            "0.1",
            "0.3",
            "123456789.012345",
            "1234567890123456",
            "9007199254740993",
            "0.30000000000000004",
            "1.2.3",
            "12a",
            "179769313486231570000000000000000",
        ] {
            assert_eq!(
                decimal(text.as_bytes()).map(f64::to_bits),
                text.parse::<f64>().ok().map(f64::to_bits),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_decimal_reads_as_str_parse_does(text in "[0-9]{0,18}(\\.[0-9]{0,18})?|[-+.0-9eE]{0,12}") {
            proptest::prop_assert_eq!(
                decimal(text.as_bytes()).map(f64::to_bits),
                text.parse::<f64>().ok().map(f64::to_bits)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn a_decimal_line_reads_as_its_line_does(
            value in "[0-9]{0,18}(\\.[0-9]{0,18})?|[-+.0-9eE]{0,12}",
            after in "(\n[0-9a-z:.\n]{0,8})?",
        ) {
            let text = format!("{value}{after}");
            let (read, end) = decimal_line(text.as_bytes());
            proptest::prop_assert_eq!(end, value.len());
            proptest::prop_assert_eq!(
                read.map(f64::to_bits),
                value.parse::<f64>().ok().map(f64::to_bits)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn split_line_agrees_with_a_byte_loop(text in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(b':'),
                proptest::prelude::Just(b'\n'),
                proptest::prelude::any::<u8>(),
            ],
            0..40,
        )) {
            let end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
            let colon = text[..end].iter().position(|&b| b == b':');
            proptest::prop_assert_eq!(split_line(&text), (colon, end));
        }
    }

    #[test]
    fn fields_are_numbered_by_their_place_in_keys() {
        for (i, (key, field)) in KEYS.iter().enumerate() {
            assert_eq!(*field as usize, i, "{key:?}");
            assert!(expected_key(&[key, &b"12345678"[..]].concat(), i).is_some());
        }
    }

    #[test]
    fn keys_out_of_order_and_numbers_that_are_not_read_the_same() {
        let text = b"Load:7\nName:a\nMaxJobs:12345678901\nVersion:4294967296\n\
                     FreeMem:4294967295\nLoadAvg1:1x\nLoadAvg5:\nLoadAvg10:05\nIP:";
        let host = HostStats::parse(text);
        assert_eq!(format!("{host:?}"), format!("{:?}", parse_naively(text)));
        assert_eq!(
            (host.load, host.name, host.max_jobs, host.version),
            (Some(7), Some(&b"a"[..]), None, None)
        );
        assert_eq!(
            (
                host.free_mem,
                host.load_avg1,
                host.load_avg5,
                host.load_avg10
            ),
            (Some(u32::MAX), None, None, Some(5))
        );
        assert_eq!(host.ip, Some(&b""[..]));
    }

    fn bytes() -> impl proptest::strategy::Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of("[a-zA-Z0-9 ._-]{0,20}".prop_map(String::into_bytes))
    }

    proptest::proptest! {
        #[test]
        fn the_text_written_reads_back_as_the_same_statistics(
            texts in (bytes(), bytes(), bytes(), bytes()),
            numbers in proptest::array::uniform7(proptest::option::of(proptest::num::u32::ANY)),
            no_remote in proptest::option::of(proptest::bool::ANY),
            speed in proptest::option::of(0u64..10_000_000_000),
            offline in proptest::bool::ANY,
        ) {
            let [max_jobs, version, load, load_avg1, load_avg5, load_avg10, free_mem] = numbers;
            let stats = HostStats {
                name: texts.0.as_deref(),
                ip: texts.1.as_deref(),
                max_jobs,
                no_remote,
                platform: texts.2.as_deref(),
                version,
                features: texts.3.as_deref(),
                // Six decimals: what `%f` keeps.
                speed: speed.map(|s| s as f64 / 1e6),
                load,
                load_avg1,
                load_avg5,
                load_avg10,
                free_mem,
                offline,
            };
            let text = stats.to_text();
            proptest::prop_assert_eq!(HostStats::parse(&text), stats);
        }
    }

    #[test]
    fn a_login_reads_as_a_real_schedulers() {
        let text = HostStats {
            load: Some(28),
            ..HostStats::login("localice", "127.0.0.1", 2, true)
        }
        .to_text();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "Name:localice\nIP:127.0.0.1\nMaxJobs:2\nNoRemote:true\nPlatform:x86_64\n\
             Version:43\nFeatures:env_xz env_zstd\nSpeed:0.000000\nLoad:28\n"
        );
    }

    /// The obvious parser, to check the word-at-a-time one against.
    fn parse_naively(text: &[u8]) -> HostStats<'_> {
        let mut s = HostStats::default();
        for line in text.split(|&b| b == b'\n') {
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let _ = s.set(&line[..colon], &line[colon + 1..]);
            }
        }
        s
    }

    proptest::proptest! {
        #[test]
        fn parse_agrees_with_a_byte_at_a_time_parser(lines in proptest::collection::vec(
            (
                "(Name|IP|MaxJobs|NoRemote|Platform|Version|Features|Speed|Load|LoadAvg1|LoadAvg5|LoadAvg10|FreeMem|State|LoadAvg|[A-Za-z:\n]{0,10})",
                "(:|::|)",
                "([0-9]{0,12}|[0-9.:a-z\n]{0,12})",
                "\n?",
            ),
            0..16,
        )) {
            let text: String = lines
                .iter()
                .map(|(k, c, v, nl)| format!("{k}{c}{v}{nl}"))
                .collect();
            let fast = HostStats::parse(text.as_bytes());
            let naive = parse_naively(text.as_bytes());
            // Compare bit for bit, NaN included.
            proptest::prop_assert_eq!(
                format!("{fast:?}"),
                format!("{naive:?}"),
                "{:?}",
                text
            );
        }
    }
}
