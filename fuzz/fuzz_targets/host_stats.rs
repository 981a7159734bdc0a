//! `HostStats::parse` on arbitrary `MON_STATS` text: never panics, and every
//! text field it returns is a slice of one line of the input.

#![no_main]

use icewatch::protocol::stats::HostStats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let stats = HostStats::parse(text);
    let range = text.as_ptr_range();
    for field in [stats.name, stats.ip, stats.platform, stats.features]
        .into_iter()
        .flatten()
    {
        assert!(!field.contains(&b'\n'));
        if !field.is_empty() {
            assert!(range.contains(&field.as_ptr()));
        }
    }
});
