//! `monitor --keep-blocks`: blocks that outlast a scheduler restart. The
//! scheduler keeps its block list in memory only; icewatch keeps a copy
//! (in the history database, through a [`BlockBook`]) and gives it back
//! to a scheduler that has forgotten it. The rules, in `docs/admin.md`:
//!
//! - the list kept is the scheduler's own (`listblocks`, read at every
//!   poll of [`control`](super::control)), whoever blocked: the page,
//!   `icewatch admin`, telnet;
//! - a name that leaves the list while the same scheduler lives was
//!   unblocked: it is no longer kept;
//! - a name that is missing from a scheduler started since it was last
//!   seen blocked was forgotten, not unblocked: it is blocked again
//!   (`blockcs`), and the list read again to confirm it.
//!
//! Which scheduler answers is told by the text port itself, not by the
//! monitor's connection (which may reach the new scheduler later): one
//! connection to the text port talks to one scheduler process for as
//! long as it lasts, and a new connection's greeting gives the
//! scheduler's uptime, so its start. [`plan`] is that rule, pure.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A block that icewatch keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Kept {
    /// The name (or address) blocked, as the scheduler lists it.
    pub name: String,
    /// When icewatch first saw it blocked, ms since the epoch.
    pub since_ms: u64,
    /// When icewatch last saw a scheduler list it at its first read of
    /// that scheduler, or blocked it again; ms since the epoch.
    pub seen_ms: u64,
}

/// An action on the scheduler, as the history's audit keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// `block`, `unblock`, `remove` (the page) or `reapply` (`--keep-blocks`).
    pub action: &'static str,
    /// The host name.
    pub host: String,
    /// Who asked: the client's address (and the page's origin), or
    /// `icewatch --keep-blocks`.
    pub who: String,
    /// `done`, `unchanged` or `failed`.
    pub result: &'static str,
    /// What happened, in a sentence.
    pub said: String,
}

/// Where the kept blocks and the audit of actions are written: the
/// history database (`icewatch::history::Book`). Each call is short and
/// blocking; errors are in words.
pub trait BlockBook: Send + Sync + std::fmt::Debug {
    /// Every kept block.
    fn kept(&self) -> Result<Vec<Kept>, String>;
    /// Adds `kept`, or updates its `seen_ms`.
    fn keep(&self, kept: &Kept) -> Result<(), String>;
    /// No longer keeps `name`.
    fn forget(&self, name: &str) -> Result<(), String>;
    /// Writes one audit record.
    fn audit(&self, record: &AuditRecord) -> Result<(), String>;
}

/// A kept name missing from a new scheduler counts as unblocked only if
/// it was seen blocked this long after that scheduler's start (the
/// greeting's uptime is in whole seconds, and the way back takes time).
pub const SAME_SCHEDULER_MARGIN_MS: u64 = 2_000;

/// What the text port has told of the scheduler the block list was read
/// from.
#[derive(Clone, Copy, Debug)]
pub enum Session<'a> {
    /// The same connection as the read before, which listed these: the
    /// same scheduler process.
    Same(&'a BTreeSet<String>),
    /// The first read on a new connection, to a scheduler that started
    /// then (ms since the epoch), if its greeting said.
    New {
        /// The scheduler's start, from its uptime.
        started_ms: Option<u64>,
    },
}

/// What to do after a read of the block list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Blocked on the scheduler and not kept yet: keep them.
    pub keep: Vec<String>,
    /// Kept, and unblocked on a scheduler that had them: forget them.
    pub forget: Vec<String>,
    /// Kept, and missing from a scheduler that never had them: block them
    /// again.
    pub reapply: Vec<String>,
}

/// The rule of the module docs: what a read `listed` of the block list
/// means for the `kept` blocks.
pub fn plan(kept: &BTreeMap<String, Kept>, listed: &BTreeSet<String>, session: Session) -> Plan {
    let mut plan = Plan {
        keep: listed
            .iter()
            .filter(|n| !kept.contains_key(*n))
            .cloned()
            .collect(),
        ..Plan::default()
    };
    for (name, k) in kept.iter().filter(|(n, _)| !listed.contains(*n)) {
        let unblocked = match session {
            // It was there a moment ago, on this very scheduler.
            Session::Same(before) => before.contains(name),
            // This scheduler had it after it started, and has it no more.
            Session::New { started_ms } => {
                started_ms.is_some_and(|s| k.seen_ms > s.saturating_add(SAME_SCHEDULER_MARGIN_MS))
            }
        };
        if unblocked {
            plan.forget.push(name.clone());
        } else {
            plan.reapply.push(name.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(names: &[(&str, u64)]) -> BTreeMap<String, Kept> {
        names
            .iter()
            .map(|&(name, seen_ms)| {
                let k = Kept {
                    name: name.to_owned(),
                    since_ms: 1,
                    seen_ms,
                };
                (name.to_owned(), k)
            })
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn an_empty_list_from_a_restarted_scheduler_is_not_an_unblock() {
        let k = kept(&[("remote2", 10_000), ("10.0.0.7", 20_000)]);
        let p = plan(
            &k,
            &set(&[]),
            Session::New {
                started_ms: Some(50_000),
            },
        );
        assert_eq!(p.reapply, strings(&["10.0.0.7", "remote2"]));
        assert!(p.forget.is_empty() && p.keep.is_empty());
        // A scheduler whose greeting gives no uptime may be a new one.
        let p = plan(&k, &set(&[]), Session::New { started_ms: None });
        assert_eq!(p.reapply.len(), 2);
    }

    #[test]
    fn a_name_gone_from_the_same_scheduler_was_unblocked() {
        let k = kept(&[("remote1", 10_000), ("remote2", 10_000)]);
        let p = plan(
            &k,
            &set(&["remote1"]),
            Session::Same(&set(&["remote1", "remote2"])),
        );
        assert_eq!(p.forget, strings(&["remote2"]));
        assert!(p.reapply.is_empty() && p.keep.is_empty());
    }

    #[test]
    fn a_name_missing_on_the_same_connection_since_it_began_is_blocked_again() {
        // A reapply that did not take: tried again at the next read.
        let k = kept(&[("remote2", 10_000)]);
        let p = plan(&k, &set(&[]), Session::Same(&set(&[])));
        assert_eq!(p.reapply, strings(&["remote2"]));
    }

    #[test]
    fn a_new_connection_to_the_scheduler_that_had_it_sees_an_unblock() {
        // Seen at 60 s on a scheduler started at 50 s, gone now: someone
        // unblocked it while the text port was out of reach (or icewatch
        // was down).
        let k = kept(&[("remote2", 60_000), ("remote3", 51_000)]);
        let p = plan(
            &k,
            &set(&[]),
            Session::New {
                started_ms: Some(50_000),
            },
        );
        assert_eq!(p.forget, strings(&["remote2"]));
        // Seen within the margin of the start: it may have been the old
        // scheduler's; blocked again rather than lost.
        assert_eq!(p.reapply, strings(&["remote3"]));
    }

    #[test]
    fn blocks_made_by_anyone_are_kept() {
        let k = kept(&[("remote1", 10_000)]);
        let p = plan(
            &k,
            &set(&["remote1", "remote4"]),
            Session::Same(&set(&["remote1"])),
        );
        assert_eq!(p.keep, strings(&["remote4"]));
        assert!(p.forget.is_empty() && p.reapply.is_empty());
    }
}
