//! Messages between daemons, clients and the scheduler about hosts and
//! environments: `LOGIN`, `STATS`, `CS_CONF`, `GET_NATIVE_ENV`,
//! `NATIVE_ENV`, `TRANFER_ENV`, `VERIFY_ENV`, `VERIFY_ENV_RESULT`,
//! `BLACKLIST_HOST_ENV`, `STATUS_TEXT`.

use super::wire::{be_u32, put_string, put_u32, string, EnvList, StrList, WResult};
use bytes::BufMut;

/// `LOGIN`: a daemon announces itself to the scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Login<'a> {
    /// The daemon's port for compile requests.
    pub port: u32,
    /// How many jobs it runs at once.
    pub max_jobs: u32,
    /// Environments it has installed.
    pub environments: EnvList<'a>,
    /// Its node name.
    pub node_name: &'a [u8],
    /// Its platform.
    pub host_platform: &'a [u8],
    /// Non-zero if it can chroot.
    pub chroot_possible: u32,
    /// (v26) Non-zero if it takes no remote jobs.
    pub no_remote: u32,
    /// (v42) `NODE_FEATURE_*` bits.
    pub features: u32,
}

/// Parses a `LOGIN` body.
pub fn parse_login(i: &[u8], version: u32) -> WResult<'_, Login<'_>> {
    let (i, port) = be_u32(i)?;
    let (i, max_jobs) = be_u32(i)?;
    let (i, environments) = EnvList::parse(i)?;
    let (i, node_name) = string(i)?;
    let (i, host_platform) = string(i)?;
    let (mut i, chroot_possible) = be_u32(i)?;
    let mut m = Login {
        port,
        max_jobs,
        environments,
        node_name,
        host_platform,
        chroot_possible,
        ..Login::default()
    };
    if version >= 26 {
        (i, m.no_remote) = be_u32(i)?;
    }
    if version >= 42 {
        (i, m.features) = be_u32(i)?;
    }
    Ok((i, m))
}

/// Writes a `LOGIN` body.
pub fn write_login(out: &mut impl BufMut, m: &Login<'_>, version: u32) {
    put_u32(out, m.port);
    put_u32(out, m.max_jobs);
    m.environments.write(out);
    put_string(out, m.node_name);
    put_string(out, m.host_platform);
    put_u32(out, m.chroot_possible);
    if version >= 26 {
        put_u32(out, m.no_remote);
    }
    if version >= 42 {
        put_u32(out, m.features);
    }
}

/// `STATS`: a daemon's periodic load report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    /// Load, 0 to 1000.
    pub load: u32,
    /// Load average over 1 minute, ×1000.
    pub load_avg1: u32,
    /// Load average over 5 minutes, ×1000.
    pub load_avg5: u32,
    /// Load average over 10 minutes, ×1000.
    pub load_avg10: u32,
    /// Free memory, MiB.
    pub free_mem: u32,
}

/// Parses a `STATS` body.
pub fn parse_stats(i: &[u8]) -> WResult<'_, Stats> {
    let (i, load) = be_u32(i)?;
    let (i, load_avg1) = be_u32(i)?;
    let (i, load_avg5) = be_u32(i)?;
    let (i, load_avg10) = be_u32(i)?;
    let (i, free_mem) = be_u32(i)?;
    Ok((
        i,
        Stats {
            load,
            load_avg1,
            load_avg5,
            load_avg10,
            free_mem,
        },
    ))
}

/// Writes a `STATS` body.
pub fn write_stats(out: &mut impl BufMut, m: &Stats) {
    for v in [m.load, m.load_avg1, m.load_avg5, m.load_avg10, m.free_mem] {
        put_u32(out, v);
    }
}

/// `CS_CONF`: the scheduler configures a daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CsConf<'a> {
    /// Seconds between a daemon's pongs.
    pub max_scheduler_pong: u32,
    /// Seconds between the scheduler's pings.
    pub max_scheduler_ping: u32,
    /// Unused, kept for compatibility.
    pub bench_source: &'a [u8],
}

/// Parses a `CS_CONF` body.
pub fn parse_cs_conf(i: &[u8]) -> WResult<'_, CsConf<'_>> {
    let (i, max_scheduler_pong) = be_u32(i)?;
    let (i, max_scheduler_ping) = be_u32(i)?;
    let (i, bench_source) = string(i)?;
    Ok((
        i,
        CsConf {
            max_scheduler_pong,
            max_scheduler_ping,
            bench_source,
        },
    ))
}

/// Writes a `CS_CONF` body.
pub fn write_cs_conf(out: &mut impl BufMut, m: &CsConf<'_>) {
    put_u32(out, m.max_scheduler_pong);
    put_u32(out, m.max_scheduler_ping);
    put_string(out, m.bench_source);
}

/// `GET_NATIVE_ENV`: a client asks its daemon for a native environment.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GetNativeEnv<'a> {
    /// (v32) Compiler: `gcc`, `clang`.
    pub compiler: &'a [u8],
    /// (v32) Extra files to pack.
    pub extra_files: StrList<'a>,
    /// (v42) Compression for the tarball.
    pub compression: &'a [u8],
}

/// Parses a `GET_NATIVE_ENV` body.
pub fn parse_get_native_env(mut i: &[u8], version: u32) -> WResult<'_, GetNativeEnv<'_>> {
    let mut m = GetNativeEnv::default();
    if version >= 32 {
        (i, m.compiler) = string(i)?;
        (i, m.extra_files) = StrList::parse(i)?;
    }
    if version >= 42 {
        (i, m.compression) = string(i)?;
    }
    Ok((i, m))
}

/// Writes a `GET_NATIVE_ENV` body.
pub fn write_get_native_env(out: &mut impl BufMut, m: &GetNativeEnv<'_>, version: u32) {
    if version >= 32 {
        put_string(out, m.compiler);
        m.extra_files.write(out);
    }
    if version >= 42 {
        put_string(out, m.compression);
    }
}

/// A message whose body is a fixed sequence of strings: `NATIVE_ENV` (1),
/// `TRANFER_ENV` and `VERIFY_ENV` (2), `BLACKLIST_HOST_ENV` (3),
/// `STATUS_TEXT` (1).
macro_rules! string_message {
    ($(#[$doc:meta])* $name:ident, $parse:ident, $write:ident, $($(#[$fdoc:meta])* $field:ident),+) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        pub struct $name<'a> {
            $($(#[$fdoc])* pub $field: &'a [u8],)+
        }

        #[doc = concat!("Parses a `", stringify!($name), "` body.")]
        pub fn $parse(i: &[u8]) -> WResult<'_, $name<'_>> {
            $(let (i, $field) = string(i)?;)+
            Ok((i, $name { $($field),+ }))
        }

        #[doc = concat!("Writes a `", stringify!($name), "` body.")]
        pub fn $write(out: &mut impl BufMut, m: &$name<'_>) {
            $(put_string(out, m.$field);)+
        }
    };
}

string_message!(
    /// `NATIVE_ENV`: the daemon's answer to `GET_NATIVE_ENV`.
    NativeEnv, parse_native_env, write_native_env,
    /// The environment's name.
    native_version
);

string_message!(
    /// `TRANFER_ENV` (sic): an environment tarball follows in file chunks.
    EnvTransfer, parse_env_transfer, write_env_transfer,
    /// The environment's name.
    name,
    /// Its target platform.
    target
);

string_message!(
    /// `VERIFY_ENV`: a client asks a daemon to check an environment.
    VerifyEnv, parse_verify_env, write_verify_env,
    /// The environment's name.
    environment,
    /// Its target platform.
    target
);

string_message!(
    /// `BLACKLIST_HOST_ENV`: do not use this host for this environment.
    BlacklistHostEnv, parse_blacklist_host_env, write_blacklist_host_env,
    /// The environment's name.
    environment,
    /// Its target platform.
    target,
    /// The host to avoid.
    hostname
);

string_message!(
    /// `STATUS_TEXT`: a free-form status line.
    StatusText, parse_status_text, write_status_text,
    /// The text.
    text
);

/// `VERIFY_ENV_RESULT`: whether an environment works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VerifyEnvResult {
    /// Non-zero if it works.
    pub ok: u32,
}

/// Parses a `VERIFY_ENV_RESULT` body.
pub fn parse_verify_env_result(i: &[u8]) -> WResult<'_, VerifyEnvResult> {
    let (i, ok) = be_u32(i)?;
    Ok((i, VerifyEnvResult { ok }))
}

/// Writes a `VERIFY_ENV_RESULT` body.
pub fn write_verify_env_result(out: &mut impl BufMut, m: &VerifyEnvResult) {
    put_u32(out, m.ok);
}
