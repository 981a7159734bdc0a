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

/// Typed view of a `MON_STATS` text; parsing allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct HostStats<'a> {
    /// `Name`: the daemon's node name.
    pub name: Option<&'a [u8]>,
    /// `IP`: the address the scheduler sees.
    pub ip: Option<&'a [u8]>,
    /// `MaxJobs`: slots for compile jobs.
    pub max_jobs: Option<u32>,
    /// `NoRemote`: takes no jobs from other hosts.
    pub no_remote: Option<bool>,
    /// `Platform`, e.g. `x86_64`.
    pub platform: Option<&'a [u8]>,
    /// `Version`: the daemon's protocol version.
    pub version: Option<u32>,
    /// `Features`, space separated (`env_xz env_zstd`).
    pub features: Option<&'a [u8]>,
    /// `Speed`: the scheduler's speed estimate.
    pub speed: Option<f64>,
    /// `Load`: 0 (idle) to 1000 (full).
    pub load: Option<u32>,
    /// `LoadAvg1`, ×1000.
    pub load_avg1: Option<u32>,
    /// `LoadAvg5`, ×1000.
    pub load_avg5: Option<u32>,
    /// `LoadAvg10`, ×1000.
    pub load_avg10: Option<u32>,
    /// `FreeMem`, MiB.
    pub free_mem: Option<u32>,
    /// `State:Offline`: the host left the cluster.
    pub offline: bool,
}

impl<'a> HostStats<'a> {
    /// Parses the text; never fails (bad values read as `None`).
    pub fn parse(text: &'a [u8]) -> HostStats<'a> {
        let mut s = HostStats::default();
        let mut rest = text;
        while !rest.is_empty() {
            let (colon, end) = split_line(rest);
            let Some((line, next)) = rest.split_at_checked(end) else {
                break;
            };
            if let Some((key, value)) = colon.and_then(|c| line.split_at_checked(c)) {
                s.set(key, value.get(1..).unwrap_or_default());
            }
            rest = next.get(1..).unwrap_or_default();
        }
        s
    }

    fn set(&mut self, key: &[u8], value: &'a [u8]) {
        match key {
            b"Name" => self.name = Some(value),
            b"IP" => self.ip = Some(value),
            b"MaxJobs" => self.max_jobs = number(value),
            b"NoRemote" => self.no_remote = Some(value == b"true"),
            b"Platform" => self.platform = Some(value),
            b"Version" => self.version = number(value),
            b"Features" => self.features = Some(value),
            b"Speed" => self.speed = decimal(value),
            b"Load" => self.load = number(value),
            b"LoadAvg1" => self.load_avg1 = number(value),
            b"LoadAvg5" => self.load_avg5 = number(value),
            b"LoadAvg10" => self.load_avg10 = number(value),
            b"FreeMem" => self.free_mem = number(value),
            b"State" => self.offline = value == b"Offline",
            _ => {}
        }
    }
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

/// The top bit of every byte of `word` that equals `byte`, with no false
/// hits (a borrow-free variant of the classic has-zero-byte trick).
#[inline]
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ u64::from_ne_bytes([byte; 8]);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The first `byte` in a short `haystack`.
fn find(haystack: &[u8], byte: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == byte)
}

/// A decimal `u32` without allocating; `None` on anything else.
fn number(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Exact powers of ten as `f64` (all below 2^53).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A float as `str::parse::<f64>` reads it, with a fast path for the
/// scheduler's `%f` (`12.500000`): with at most 15 digits the digits form an
/// exact integer `m` below 2^53 and `m / 10^k` is one correctly rounded
/// division of exact values, which is the same float `str::parse` gives.
/// Anything else (signs, exponents, `inf`, long numbers) takes `str::parse`.
fn decimal(v: &[u8]) -> Option<f64> {
    let (int, frac) = match find(v, b'.') {
        Some(dot) => (
            v.get(..dot).unwrap_or_default(),
            v.get(dot + 1..).unwrap_or_default(),
        ),
        None => (v, &[][..]),
    };
    let digits = int.len() + frac.len();
    if digits == 0 || digits > 15 {
        return slow_decimal(v);
    }
    let mut m: u64 = 0;
    for &b in int.iter().chain(frac) {
        if !b.is_ascii_digit() {
            return slow_decimal(v);
        }
        m = m * 10 + u64::from(b - b'0');
    }
    Some(m as f64 / POW10.get(frac.len())?)
}

#[cold]
fn slow_decimal(v: &[u8]) -> Option<f64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The obvious parser, to check the word-at-a-time one against.
    fn parse_naively(text: &[u8]) -> HostStats<'_> {
        let mut s = HostStats::default();
        for line in text.split(|&b| b == b'\n') {
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                s.set(&line[..colon], &line[colon + 1..]);
            }
        }
        s
    }

    proptest::proptest! {
        #[test]
        fn parse_agrees_with_a_byte_at_a_time_parser(lines in proptest::collection::vec(
            (
                "(Name|IP|MaxJobs|Speed|LoadAvg10|State|[A-Za-z:\n]{0,10})",
                "(:|::|)",
                "[0-9.:a-z\n]{0,12}",
                "\n?",
            ),
            0..8,
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
