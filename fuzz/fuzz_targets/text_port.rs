//! The text port's parsers (`protocol::text`) on arbitrary lines: never
//! panic; a command parsed from a line writes a line that parses back to it.

#![no_main]

use icewatch::protocol::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let input = String::from_utf8_lossy(bytes);
    for line in input.lines() {
        let _ = text::parse_listcs_line(line);
        let _ = text::parse_listblocks_line(line);
        let _ = (text::is_greeting(line), text::is_refusal(line), text::valid_host_name(line));
        if let Some(cmd) = text::Command::parse(line) {
            assert_eq!(text::Command::parse(&cmd.to_string()), Some(cmd));
        }
    }
    for daemon in text::parse_internals(input.lines()) {
        assert!(!daemon.name.contains('\n'));
    }
});
