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
        for line in text.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (key, value) = (&line[..colon], &line[colon + 1..]);
            match key {
                b"Name" => s.name = Some(value),
                b"IP" => s.ip = Some(value),
                b"MaxJobs" => s.max_jobs = number(value),
                b"NoRemote" => s.no_remote = Some(value == b"true"),
                b"Platform" => s.platform = Some(value),
                b"Version" => s.version = number(value),
                b"Features" => s.features = Some(value),
                b"Speed" => s.speed = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
                b"Load" => s.load = number(value),
                b"LoadAvg1" => s.load_avg1 = number(value),
                b"LoadAvg5" => s.load_avg5 = number(value),
                b"LoadAvg10" => s.load_avg10 = number(value),
                b"FreeMem" => s.free_mem = number(value),
                b"State" => s.offline = value == b"Offline",
                _ => {}
            }
        }
        s
    }
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
}
