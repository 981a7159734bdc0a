//! [`View`]: what the person at the terminal chose to see (sort column,
//! selected host, the host pane, filter, help), and the one table of keys
//! that changes it. icecream-sundae's keys work as they do there.

use super::model::{Host, Model};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::{HashMap, HashSet};

/// The columns of the host table, in order: sundae's, then the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// The scheduler's host id.
    Id,
    /// The host's name.
    Name,
    /// Remote jobs that began compiling on it.
    In,
    /// Jobs compiling on it now.
    Cur,
    /// Its slots.
    Max,
    /// A bar of its slots, one mark per job.
    Jobs,
    /// Its remote jobs that began compiling on a server.
    Out,
    /// Local jobs it started.
    Local,
    /// Its own jobs running now, anywhere.
    Active,
    /// Its jobs waiting for a server.
    Pending,
    /// The scheduler's speed estimate.
    Speed,
    /// Its load, 0 to 100 %.
    Load,
}

/// Every column, in the order shown.
pub const COLUMNS: [Column; 12] = [
    Column::Id,
    Column::Name,
    Column::In,
    Column::Cur,
    Column::Max,
    Column::Jobs,
    Column::Out,
    Column::Local,
    Column::Active,
    Column::Pending,
    Column::Speed,
    Column::Load,
];

impl Column {
    /// The heading, as sundae spells it.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Name => "NAME",
            Column::In => "IN",
            Column::Cur => "CUR",
            Column::Max => "MAX",
            Column::Jobs => "JOBS",
            Column::Out => "OUT",
            Column::Local => "LOCAL",
            Column::Active => "ACTIVE",
            Column::Pending => "PENDING",
            Column::Speed => "SPEED",
            Column::Load => "LOAD",
        }
    }

    /// What it means, for the help screen.
    pub fn meaning(self) -> &'static str {
        match self {
            Column::Id => "the scheduler's id for the host (new at each login)",
            Column::Name => "host name; underlined: takes no remote jobs (--no-remote)",
            Column::In => "remote jobs that began compiling on it, its own given back included",
            Column::Cur => "jobs compiling on it now, remote and local",
            Column::Max => "its compile slots",
            Column::Jobs => "its slots: = a remote job, % a local one, coloured by submitter",
            Column::Out => "its remote jobs that began compiling on a server",
            Column::Local => "local jobs it started",
            Column::Active => "its own jobs running now, anywhere in the cluster",
            Column::Pending => "its jobs waiting for a server",
            Column::Speed => "the scheduler's speed estimate",
            Column::Load => "its load as its daemon reports it",
        }
    }
}

/// Which jobs the job list shows (`f` cycles through them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobFilter {
    /// Running jobs first, then the finished ones, newest first.
    #[default]
    All,
    /// Waiting, compiling and local jobs.
    Running,
    /// Jobs that ended.
    Finished,
    /// Jobs that failed or were cut short.
    Failed,
}

impl JobFilter {
    /// Its name in the job list's title.
    pub fn name(self) -> &'static str {
        match self {
            JobFilter::All => "all",
            JobFilter::Running => "running",
            JobFilter::Finished => "finished",
            JobFilter::Failed => "failed",
        }
    }

    fn next(self) -> JobFilter {
        match self {
            JobFilter::All => JobFilter::Running,
            JobFilter::Running => JobFilter::Finished,
            JobFilter::Finished => JobFilter::Failed,
            JobFilter::Failed => JobFilter::All,
        }
    }
}

/// The keys, as the help screen lists them: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    (
        "↓ j / ↑ k",
        "next / previous host (PgDn, PgUp, g, G: by pages, ends)",
    ),
    (
        "← h / → l, Tab",
        "sort by the column to the left / right (Tab wraps)",
    ),
    ("r", "reverse the sort"),
    (
        "Space, Enter; i",
        "the selected host's pane; in it, its daemon's internals",
    ),
    (
        "a",
        "what each host compiles now, and for whom, in the table",
    ),
    ("f", "jobs shown: all, running, finished, failed"),
    ("/", "filter by host or file name (Enter keeps, Esc clears)"),
    ("?", "this help; any key closes it"),
    ("q, Ctrl-C", "quit"),
];

/// What the person chose to see.
#[derive(Clone, Debug)]
pub struct View {
    /// The column the host table is sorted by, an index into [`COLUMNS`].
    pub sort: usize,
    /// Sorted largest first.
    pub reverse: bool,
    /// The selected host's id.
    pub selected: Option<u32>,
    /// The host pane is open (for the selected host).
    pub pane: bool,
    /// The host table lists what each host compiles now.
    pub details: bool,
    /// The help screen is shown.
    pub help: bool,
    /// Hosts and jobs shown are those whose host or file name holds this
    /// (ignoring case); empty: all.
    pub filter: String,
    /// Keys go into the filter.
    pub editing: bool,
    /// Which jobs the job list shows.
    pub jobs: JobFilter,
    /// The person asked for the selected host's `internals` (taken by
    /// the loop, which sends the request).
    pub ask_internals: bool,
    /// The person asked to quit.
    pub quit: bool,
}

impl Default for View {
    fn default() -> View {
        View {
            sort: 0,
            reverse: false,
            selected: None,
            pane: false,
            details: false,
            help: false,
            filter: String::new(),
            editing: false,
            jobs: JobFilter::All,
            ask_internals: false,
            quit: false,
        }
    }
}

/// Rows a page key moves.
const PAGE: usize = 10;

impl View {
    /// Takes a key; `rows` are the host ids as the table shows them now.
    /// Answers whether the screen changed.
    pub fn key(&mut self, key: KeyEvent, rows: &[u32]) -> bool {
        if key.kind == KeyEventKind::Release {
            return false;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return true;
        }
        if self.help {
            self.help = false;
            return true;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !ctrl => self.filter.push(c),
                _ => return false,
            }
            return true;
        }
        let at = self
            .selected
            .and_then(|id| rows.iter().position(|&r| r == id));
        let last = rows.len().saturating_sub(1);
        let select = |i: usize| rows.get(i.min(last)).copied();
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = select(at.map_or(0, |i| i + 1));
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = select(at.map_or(0, |i| i.saturating_sub(1)));
            }
            KeyCode::PageDown => self.selected = select(at.map_or(0, |i| i + PAGE)),
            KeyCode::PageUp => self.selected = select(at.unwrap_or(0).saturating_sub(PAGE)),
            KeyCode::Home | KeyCode::Char('g') => self.selected = select(0),
            KeyCode::End | KeyCode::Char('G') => self.selected = select(last),
            KeyCode::Left | KeyCode::Char('h') => self.sort = self.sort.saturating_sub(1),
            KeyCode::Right | KeyCode::Char('l') => {
                self.sort = (self.sort + 1).min(COLUMNS.len() - 1)
            }
            KeyCode::Tab => self.sort = (self.sort + 1) % COLUMNS.len(),
            KeyCode::BackTab => self.sort = (self.sort + COLUMNS.len() - 1) % COLUMNS.len(),
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char(' ') | KeyCode::Enter => {
                if self.selected.is_none() {
                    self.selected = select(0);
                }
                self.pane = !self.pane && self.selected.is_some();
            }
            KeyCode::Esc => {
                self.pane = false;
                self.filter.clear();
            }
            KeyCode::Char('a') => self.details = !self.details,
            KeyCode::Char('i') if self.pane => self.ask_internals = true,
            KeyCode::Char('f') => self.jobs = self.jobs.next(),
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('?') => self.help = true,
            _ => return false,
        }
        true
    }

    /// The column sorted by.
    pub fn sort_column(&self) -> Column {
        COLUMNS[self.sort.min(COLUMNS.len() - 1)]
    }

    /// Whether `text` passes the filter.
    pub fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The hosts the table shows, in its order: online ones (every host
    /// when the scheduler is gone: its last picture), those the filter
    /// lets through by name or by a job's file, sorted.
    pub fn hosts<'m>(&self, model: &'m Model, own: &HashMap<u32, (u32, u32)>) -> Vec<&'m Host> {
        let last_picture = model.scheduler.as_ref().is_some_and(|s| !s.online);
        let by_file: HashSet<u32> = if self.filter.is_empty() {
            HashSet::new()
        } else {
            model
                .jobs
                .values()
                .chain(&model.history)
                .filter(|j| self.matches(&j.file))
                .flat_map(|j| [j.client, j.server])
                .flatten()
                .collect()
        };
        let mut hosts: Vec<&Host> = model
            .hosts
            .values()
            .filter(|h| h.online || last_picture)
            .filter(|h| self.matches(&h.name) || by_file.contains(&h.id))
            .collect();
        let active = |h: &Host| own.get(&h.id).map_or(0, |o| o.0);
        let col = self.sort_column();
        hosts.sort_by(|a, b| {
            let order = match col {
                Column::Id => a.id.cmp(&b.id),
                Column::Name => a.name.cmp(&b.name),
                Column::In => a.jobs_in.cmp(&b.jobs_in),
                Column::Cur | Column::Jobs => a.active.cmp(&b.active),
                Column::Max => a.max_jobs.cmp(&b.max_jobs),
                Column::Out => a.jobs_out.cmp(&b.jobs_out),
                Column::Local => a.local_jobs.cmp(&b.local_jobs),
                Column::Active => active(a).cmp(&active(b)),
                Column::Pending => a.pending.cmp(&b.pending),
                Column::Speed => a.speed.total_cmp(&b.speed),
                Column::Load => a.load.cmp(&b.load),
            };
            order.then(a.id.cmp(&b.id))
        });
        if self.reverse {
            hosts.reverse();
        }
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(view: &mut View, code: KeyCode, rows: &[u32]) {
        view.key(KeyEvent::new(code, KeyModifiers::NONE), rows);
    }

    #[test]
    fn sundae_keys_select_sort_and_quit() {
        let mut v = View::default();
        let rows = [3, 1, 2];
        press(&mut v, KeyCode::Char('j'), &rows);
        assert_eq!(v.selected, Some(3));
        press(&mut v, KeyCode::Down, &rows);
        press(&mut v, KeyCode::Down, &rows);
        press(&mut v, KeyCode::Down, &rows);
        assert_eq!(v.selected, Some(2), "stops at the last");
        press(&mut v, KeyCode::Char('k'), &rows);
        assert_eq!(v.selected, Some(1));
        press(&mut v, KeyCode::Char('l'), &rows);
        assert_eq!(v.sort_column(), Column::Name);
        press(&mut v, KeyCode::Char('h'), &rows);
        press(&mut v, KeyCode::Char('h'), &rows);
        assert_eq!(v.sort_column(), Column::Id);
        press(&mut v, KeyCode::BackTab, &rows);
        assert_eq!(v.sort_column(), Column::Load);
        press(&mut v, KeyCode::Tab, &rows);
        assert_eq!(v.sort_column(), Column::Id, "Tab wraps");
        press(&mut v, KeyCode::Char('r'), &rows);
        assert!(v.reverse);
        press(&mut v, KeyCode::Char(' '), &rows);
        assert!(v.pane);
        press(&mut v, KeyCode::Char('q'), &rows);
        assert!(v.quit);
    }

    #[test]
    fn the_filter_takes_every_key_until_enter_or_esc() {
        let mut v = View::default();
        for c in ['/', 'q', 'R', 'e'] {
            press(&mut v, KeyCode::Char(c), &[]);
        }
        press(&mut v, KeyCode::Backspace, &[]);
        assert!(!v.quit && v.editing);
        assert_eq!(v.filter, "qR");
        press(&mut v, KeyCode::Enter, &[]);
        assert!(!v.editing && v.matches("aqrb") && !v.matches("ab"));
        press(&mut v, KeyCode::Esc, &[]);
        assert!(v.filter.is_empty());
    }
}
