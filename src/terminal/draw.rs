//! [`draw`]: the screen, a pure function of the [`Model`], the [`View`]
//! and the time, in the 16 colours every terminal has. From top to bottom:
//! the status line (where the data comes from, the scheduler online,
//! offline or reconnecting), the cluster's totals with its busy-slots
//! sparkline, icecream-sundae's host table, the job list, and a line of
//! keys (or the filter being typed). The host pane opens beside the tables
//! on a wide terminal and in place of the job list on a narrow one; help
//! opens over everything.

use super::model::{Asked, Host, Job, Model};
use super::view::{Column, JobFilter, View, COLUMNS, KEYS};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, HighlightSpacing, Paragraph, Row, Sparkline, Table, TableState,
};
use ratatui::Frame;
use std::collections::HashMap;

/// Everything one frame shows.
#[derive(Clone, Copy, Debug)]
pub struct Screen<'a> {
    /// The cluster.
    pub model: &'a Model,
    /// What the person chose to see.
    pub view: &'a View,
    /// Now, on the state's clock (a replay's is the recording's), ms since
    /// the epoch.
    pub now_ms: u64,
    /// Where the data comes from, e.g. `scheduler.lan:8765` or an
    /// icewatch's WebSocket URL.
    pub source: &'a str,
    /// Why the link to `source` is down, while it is (the view then
    /// reconnects).
    pub link_error: Option<&'a str>,
}

/// Colours a submitter's jobs may take: the 16-colour palette without
/// black, white and greys.
const PALETTE: [Color; 12] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::LightRed,
    Color::LightCyan,
    Color::LightMagenta,
    Color::LightYellow,
    Color::LightGreen,
    Color::LightBlue,
    Color::Red,
];

/// A host's colour, the same for its name everywhere and every time.
fn color_of(name: &str) -> Color {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    PALETTE[hash as usize % PALETTE.len()]
}

/// The host pane goes beside the tables from this width on.
const WIDE: u16 = 120;
/// The pane's width beside the tables.
const PANE_WIDTH: u16 = 52;
/// Samples a host's sparkline shows in the table.
const ROW_SPARK: usize = 40;

/// The host ids as the table shows them, for the keys.
pub fn host_rows(model: &Model, view: &View) -> Vec<u32> {
    view.hosts(model, &model.own_jobs())
        .iter()
        .map(|h| h.id)
        .collect()
}

/// Draws the whole screen into `frame`.
pub fn draw(frame: &mut Frame<'_>, screen: &Screen<'_>) {
    let area = frame.area();
    let [status, totals, spark, main, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(status_line(screen), status);
    frame.render_widget(totals_line(screen.model), totals);
    cluster_spark(frame, spark, screen.model);
    let own = screen.model.own_jobs();
    let hosts = screen.view.hosts(screen.model, &own);
    let selected = screen
        .view
        .selected
        .and_then(|id| hosts.iter().find(|h| h.id == id).copied());
    let pane_host = selected.filter(|_| screen.view.pane);
    let (tables, pane) = match pane_host {
        Some(_) if area.width >= WIDE => {
            let [t, p] = Layout::horizontal([Constraint::Min(60), Constraint::Length(PANE_WIDTH)])
                .areas(main);
            (t, Some(p))
        }
        _ => (main, None),
    };
    let wanted = u16::try_from(hosts.len() + 2).unwrap_or(u16::MAX);
    // A pane below the table takes most of the room: it has more to say.
    let share = if pane_host.is_some() && pane.is_none() {
        3
    } else {
        6
    };
    let host_height = wanted.min((tables.height * share / 10).max(4));
    let [host_area, lower] =
        Layout::vertical([Constraint::Length(host_height), Constraint::Min(0)]).areas(tables);
    host_table(frame, host_area, screen, &hosts, &own);
    match (pane_host, pane) {
        (Some(h), Some(p)) => {
            job_list(frame, lower, screen);
            host_pane(frame, p, screen, h, &own);
        }
        (Some(h), None) => host_pane(frame, lower, screen, h, &own),
        _ => job_list(frame, lower, screen),
    }
    frame.render_widget(footer_line(screen.view), footer);
    if screen.view.help {
        help(frame, area);
    }
}

fn status_line(screen: &Screen<'_>) -> Paragraph<'static> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::styled(
        " icewatch top ",
        bold.add_modifier(Modifier::REVERSED),
    )];
    let bad = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let good = Style::new().fg(Color::Green);
    if let Some(e) = screen.link_error {
        spans.push(Span::styled(
            " OFFLINE ",
            bad.add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(format!(
            " reconnecting to {}: {e}",
            screen.source
        )));
        return Paragraph::new(Line::from(spans));
    }
    match &screen.model.scheduler {
        None => spans.push(Span::raw(format!(
            " {}: waiting for the first snapshot…",
            screen.source
        ))),
        Some(s) => {
            let at = if s.address.is_empty() {
                screen.source
            } else {
                &s.address
            };
            let since = s
                .since_ms
                .map(|t| format!(" {}", dur(screen.now_ms.saturating_sub(t))))
                .unwrap_or_default();
            // A recording's name without its folders, as the page shows it.
            let file = |r: &crate::monitor::Replay| {
                r.file
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(&r.file)
                    .to_string()
            };
            match (&s.replay, s.online) {
                (Some(r), true) => {
                    spans.push(Span::styled(
                        " REPLAY ",
                        good.add_modifier(Modifier::REVERSED),
                    ));
                    spans.push(Span::raw(format!(" of {}", file(r))));
                }
                (Some(r), false) => {
                    spans.push(Span::styled(
                        " ENDED ",
                        bold.add_modifier(Modifier::REVERSED),
                    ));
                    spans.push(Span::raw(format!(
                        " replay of {}: {}",
                        file(r),
                        s.error.as_deref().unwrap_or("ended")
                    )));
                }
                (None, true) => {
                    spans.push(Span::styled(
                        " ONLINE ",
                        good.add_modifier(Modifier::REVERSED),
                    ));
                    spans.push(Span::raw(format!(" scheduler {at}")));
                    if let Some(p) = s.protocol {
                        spans.push(Span::raw(format!(" · protocol {p}")));
                    }
                    spans.push(Span::raw(format!(" · up{since}")));
                }
                (None, false) => {
                    spans.push(Span::styled(
                        " OFFLINE ",
                        bad.add_modifier(Modifier::REVERSED),
                    ));
                    spans.push(Span::raw(format!(
                        " reconnecting to scheduler {at} · down{since}: {}",
                        s.error.as_deref().unwrap_or("not connected yet")
                    )));
                }
            }
            if s.reconnects > 0 {
                spans.push(Span::raw(format!(" · {} reconnects", s.reconnects)));
            }
        }
    }
    Paragraph::new(Line::from(spans))
}

fn totals_line(model: &Model) -> Paragraph<'static> {
    let t = &model.totals;
    let fail = if t.jobs_failed > 0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    let text = vec![
        Span::raw(format!(
            " Slots {}/{} busy ({} local) · Waiting {} · Hosts {} · Done {} · ",
            t.busy_slots,
            t.total_slots,
            t.local_active,
            t.pending,
            t.hosts_online,
            t.jobs_finished + t.local_jobs_finished
        )),
        Span::styled(format!("Failed {}", t.jobs_failed), fail),
        Span::raw(format!(" · {}/min", rate(t.jobs_per_minute))),
    ];
    Paragraph::new(Line::from(text))
}

fn cluster_spark(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let [label, rest] = Layout::horizontal([Constraint::Length(6), Constraint::Min(0)]).areas(area);
    let t = &model.totals;
    frame.render_widget(Paragraph::new(" busy "), label);
    let samples: Vec<u64> = model.busy.iter().copied().collect();
    let shown = &samples[samples.len().saturating_sub(usize::from(rest.width))..];
    let max = model
        .busy
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(t.total_slots)
        .max(1);
    frame.render_widget(
        Sparkline::default()
            .data(shown)
            .max(max)
            .style(Style::new().fg(Color::Green)),
        rest,
    );
}

/// A sparkline as text, `width` samples at most, scaled to `max`.
fn spark_text<'a>(
    samples: impl DoubleEndedIterator<Item = &'a u64> + ExactSizeIterator,
    width: usize,
    max: u64,
) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = samples.len().saturating_sub(width);
    samples
        .skip(skip)
        .map(|&v| {
            let i = (v.min(max) * 8).div_ceil(max.max(1));
            BARS[usize::try_from(i).unwrap_or(8).min(8)]
        })
        .collect()
}

/// The slot bar of a host: `=` a remote job, `%` a local one, each in its
/// submitter's colour; `{}` instead of `[]` when scaled down to `width`.
fn slot_bar(model: &Model, h: &Host, local: u32, width: usize) -> Line<'static> {
    let mut marks: Vec<(char, Color)> = Vec::new();
    for (from, n) in model.links_to(h.id) {
        let name = model.hosts.get(&from).map_or("", |f| f.name.as_str());
        marks.extend(std::iter::repeat(('=', color_of(name))).take(n as usize));
    }
    marks.extend(std::iter::repeat(('%', color_of(&h.name))).take(local as usize));
    let slots = (h.max_jobs as usize).max(marks.len());
    let inner = width.saturating_sub(2);
    let (open, close, scale) = if slots > inner && inner > 0 {
        ('{', '}', inner as f64 / slots as f64)
    } else {
        ('[', ']', 1.0)
    };
    let cells = ((slots as f64) * scale).round() as usize;
    let used = ((marks.len() as f64) * scale).ceil() as usize;
    let mut spans = vec![Span::raw(open.to_string())];
    for i in 0..cells {
        if i < used {
            let (c, color) = marks[(i as f64 / scale) as usize % marks.len().max(1)];
            spans.push(Span::styled(c.to_string(), Style::new().fg(color)));
        } else {
            spans.push(Span::raw(" "));
        }
    }
    spans.push(Span::raw(close.to_string()));
    Line::from(spans)
}

fn host_table(
    frame: &mut Frame<'_>,
    area: Rect,
    screen: &Screen<'_>,
    hosts: &[&Host],
    own: &HashMap<u32, (u32, u32)>,
) {
    let (model, view) = (screen.model, screen.view);
    let wide = area.width >= 150;
    // With each host's jobs shown (`a`), the counters make room for them.
    let details = view.details;
    let wide = wide && !details;
    let columns: Vec<Column> = COLUMNS
        .iter()
        .copied()
        .filter(|&c| c != Column::Load || area.width >= 100)
        .filter(|&c| {
            !details
                || matches!(
                    c,
                    Column::Id | Column::Name | Column::Cur | Column::Max | Column::Jobs
                )
        })
        .collect();
    let max_slots = hosts
        .iter()
        .map(|h| h.max_jobs as usize + 2)
        .max()
        .unwrap_or(4);
    let bar_width = max_slots.clamp(6, if wide { 34 } else { 14 });
    let name_width = hosts
        .iter()
        .map(|h| h.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, if wide { 32 } else { 16 });
    let name_width = u16::try_from(name_width).unwrap_or(16);
    let width_of = |c: Column| -> Constraint {
        match c {
            Column::Id => Constraint::Length(4),
            Column::Name => Constraint::Length(name_width),
            Column::In | Column::Out => Constraint::Length(6),
            Column::Cur | Column::Max => Constraint::Length(3),
            Column::Jobs => Constraint::Length(u16::try_from(bar_width).unwrap_or(14)),
            Column::Local | Column::Load => Constraint::Length(5),
            Column::Active | Column::Speed => Constraint::Length(6),
            Column::Pending => Constraint::Length(7),
        }
    };
    let mut widths: Vec<Constraint> = columns.iter().map(|&c| width_of(c)).collect();
    let sorted = view.sort_column();
    let arrow = if view.reverse { "↑" } else { "↓" };
    let mut header: Vec<Cell> = columns
        .iter()
        .map(|&c| {
            if c == sorted {
                Cell::from(format!("{arrow}{}", c.title()))
                    .style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                Cell::from(c.title())
            }
        })
        .collect();
    if wide {
        widths.push(Constraint::Length(ROW_SPARK as u16));
        header.push(Cell::from("BUSY"));
    }
    if details {
        widths.push(Constraint::Fill(1));
        header.push(Cell::from("COMPILING HERE (← for whom)"));
    }
    let mut rows = Vec::new();
    let mut selected_row = None;
    for h in hosts {
        let (active, local) = own.get(&h.id).copied().unwrap_or((0, 0));
        if Some(h.id) == view.selected {
            selected_row = Some(rows.len());
        }
        let mut name_style = Style::new().fg(color_of(&h.name));
        if h.no_remote {
            name_style = name_style.add_modifier(Modifier::UNDERLINED);
        }
        let mut cells: Vec<Cell> = columns
            .iter()
            .map(|&c| match c {
                Column::Id => Cell::from(h.id.to_string()),
                Column::Name => Cell::from(Span::styled(h.name.clone(), name_style)),
                Column::In => Cell::from(h.jobs_in.to_string()),
                Column::Cur => Cell::from(h.active.to_string()),
                Column::Max => Cell::from(h.max_jobs.to_string()),
                Column::Jobs => Cell::from(slot_bar(model, h, local, bar_width)),
                Column::Out => Cell::from(h.jobs_out.to_string()),
                Column::Local => Cell::from(h.local_jobs.to_string()),
                Column::Active => Cell::from(active.to_string()),
                Column::Pending => Cell::from(h.pending.to_string()),
                Column::Speed => Cell::from(format!("{:.1}", h.speed)),
                Column::Load => Cell::from(format!("{}%", h.load / 10)),
            })
            .collect();
        if wide {
            let spark = model
                .host_busy
                .get(&h.name)
                .map(|s| spark_text(s.iter(), ROW_SPARK, u64::from(h.max_jobs.max(1))))
                .unwrap_or_default();
            cells.push(Cell::from(Span::styled(
                spark,
                Style::new().fg(Color::Green),
            )));
        }
        if details {
            cells.push(Cell::from(running_here(model, h)));
        }
        let mut row = Row::new(cells);
        if !h.online {
            row = row.style(Style::new().fg(Color::DarkGray));
        }
        rows.push(row);
    }
    let title = if view.filter.is_empty() {
        format!(" Hosts ({}) ", hosts.len())
    } else {
        format!(" Hosts ({}) matching \"{}\" ", hosts.len(), view.filter)
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::new().borders(Borders::TOP).title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(selected_row);
    frame.render_stateful_widget(table, area, &mut state);
}

/// The files compiling on `h` now, oldest first, each with the host it
/// compiles for when that is another.
fn running_here(model: &Model, h: &Host) -> String {
    let mut here: Vec<&Job> = model
        .jobs
        .values()
        .filter(|j| j.server == Some(h.id) && j.state != "waiting")
        .collect();
    here.sort_by_key(|j| j.start_ms);
    let shown: Vec<String> = here
        .iter()
        .map(|j| {
            let file = j.file.rsplit('/').next().unwrap_or(&j.file);
            match model.host_name(j, false) {
                Some(client) if client != h.name => format!("{file} ←{client}"),
                _ => file.to_string(),
            }
        })
        .collect();
    shown.join(", ")
}

/// A job's state as a short tag, in its colour.
fn state_tag(job: &Job) -> (&'static str, Style) {
    match job.state.as_str() {
        "waiting" => ("WAIT", Style::new().fg(Color::Yellow)),
        "compiling" => ("COMP", Style::new().fg(Color::Cyan)),
        "local" => ("LOCAL", Style::new().fg(Color::Magenta)),
        "finished" => ("DONE", Style::new().fg(Color::Green)),
        "local_finished" => ("L-END", Style::new().fg(Color::Green)),
        "failed" => (
            "FAIL",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        "cut_short" => ("CUT", Style::new().fg(Color::Red)),
        _ => ("?", Style::new()),
    }
}

/// Why a job ended, as people say it; empty for a clean end.
fn reason(job: &Job) -> String {
    match (job.state.as_str(), job.reason.as_deref()) {
        ("failed", _) => match job.exit_code {
            Some(code) => format!("exit code {code}"),
            None => "failed".to_string(),
        },
        (_, Some("host_left")) => "its host left".to_string(),
        (_, Some("scheduler_lost")) => "scheduler lost".to_string(),
        (_, Some("stale")) => "stale: its end never came".to_string(),
        _ => String::new(),
    }
}

/// The jobs the list shows, in order: waiting, compiling, local (newest
/// first in each), then the finished ones, newest first.
fn listed<'m>(model: &'m Model, view: &View) -> Vec<&'m Job> {
    let failed = |j: &Job| j.state == "failed" || j.state == "cut_short";
    let by_state = |s: &str| match s {
        "waiting" => 0,
        "compiling" => 1,
        _ => 2,
    };
    let passes = |j: &&Job| {
        view.matches(&j.file)
            || model.host_name(j, false).is_some_and(|n| view.matches(&n))
            || model.host_name(j, true).is_some_and(|n| view.matches(&n))
    };
    let mut running: Vec<&Job> = match view.jobs {
        JobFilter::All | JobFilter::Running => model.jobs.values().filter(passes).collect(),
        _ => Vec::new(),
    };
    running.sort_by(|a, b| {
        by_state(&a.state)
            .cmp(&by_state(&b.state))
            .then(b.start_ms.cmp(&a.start_ms))
    });
    let finished = model
        .history
        .iter()
        .rev()
        .filter(passes)
        .filter(|j| match view.jobs {
            JobFilter::All | JobFilter::Finished => true,
            JobFilter::Failed => failed(j),
            JobFilter::Running => false,
        });
    running.into_iter().chain(finished).collect()
}

fn job_row(model: &Model, j: &Job, now_ms: u64, route: bool) -> Row<'static> {
    let (tag, style) = state_tag(j);
    let time = match (j.end_ms, j.real_ms) {
        (_, Some(real)) => dur(real),
        (Some(end), None) => dur(end.saturating_sub(j.start_ms)),
        (None, None) => dur(now_ms.saturating_sub(j.start_ms)),
    };
    let client = model.host_name(j, false).unwrap_or_else(|| "?".into());
    let path = match (j.state.as_str(), model.host_name(j, true)) {
        ("local" | "local_finished", _) => format!("{client} (local)"),
        (_, Some(server)) => format!("{client} → {server}"),
        (_, None) => format!("{client} → ?"),
    };
    let mut cells = vec![
        Cell::from(Span::styled(tag, style)),
        Cell::from(format!("{time:>6}")),
        Cell::from(short_file(&j.file)),
    ];
    if route {
        cells.push(Cell::from(path));
    }
    cells.push(Cell::from(Span::styled(
        reason(j),
        Style::new().fg(Color::Red),
    )));
    Row::new(cells)
}

fn job_list(frame: &mut Frame<'_>, area: Rect, screen: &Screen<'_>) {
    if area.height < 2 {
        return;
    }
    let (model, view) = (screen.model, screen.view);
    let mut counts = [0usize; 3];
    for j in model.jobs.values() {
        match j.state.as_str() {
            "waiting" => counts[0] += 1,
            "compiling" => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    let failed = model
        .history
        .iter()
        .filter(|j| j.state == "failed" || j.state == "cut_short")
        .count();
    let title = format!(
        " Jobs ({}): {} waiting · {} compiling · {} local · {} recent ended, {failed} failed ",
        view.jobs.name(),
        counts[0],
        counts[1],
        counts[2],
        model.history.len()
    );
    let jobs = listed(model, view);
    let rows: Vec<Row> = jobs
        .iter()
        .take(usize::from(area.height))
        .map(|j| job_row(model, j, screen.now_ms, true))
        .collect();
    let widths = [
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ];
    let block = Block::new().borders(Borders::TOP).title(title);
    if rows.is_empty() {
        let none = if view.filter.is_empty() {
            " No jobs yet."
        } else {
            " No job matches the filter."
        };
        frame.render_widget(Paragraph::new(none).block(block), area);
    } else {
        frame.render_widget(Table::new(rows, widths).block(block), area);
    }
}

fn host_pane(
    frame: &mut Frame<'_>,
    area: Rect,
    screen: &Screen<'_>,
    h: &Host,
    own: &HashMap<u32, (u32, u32)>,
) {
    let model = screen.model;
    let (_, local) = own.get(&h.id).copied().unwrap_or((0, 0));
    let dot = if h.online {
        ("●", Color::Green)
    } else {
        ("●", Color::DarkGray)
    };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(dot.0, Style::new().fg(dot.1)),
        Span::styled(
            format!(" {} ", h.name),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("#{} · {} ", h.id, h.platform)),
    ]);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(if model.control.is_some() {
            " Space closes · i internals "
        } else {
            " Space closes "
        });
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let load_avg = h
        .load_avg
        .map(|a| format!(" · avg {:.2} {:.2} {:.2}", a[0], a[1], a[2]))
        .unwrap_or_default();
    let local_text = if local > 0 {
        format!(" ({local} local)")
    } else {
        String::new()
    };
    let mut facts = vec![
        ("IP", format!("{} · protocol {}", h.ip, h.protocol)),
        ("load", format!("{} %{load_avg}", h.load / 10)),
        (
            "jobs",
            format!(
                "{} / {} slots{local_text} · {} waiting · speed {:.1}",
                h.active, h.max_jobs, h.pending, h.speed
            ),
        ),
        (
            "IN · OUT",
            format!(
                "{} came in ({} its own) · {} went out",
                h.jobs_in, h.jobs_in_own, h.jobs_out
            ),
        ),
        (
            "submitted",
            format!(
                "{} remote · {} local · {} failed",
                h.submitted, h.local_jobs, h.failed
            ),
        ),
        (
            "host",
            format!(
                "{} · {}",
                h.free_mem_mb
                    .map_or("memory –".into(), |m| format!("{m} MiB free")),
                if h.features.is_empty() {
                    "–"
                } else {
                    &h.features
                }
            ),
        ),
    ];
    if h.no_remote {
        facts.push(("mode", "no-remote: takes no jobs from others".into()));
    }
    if !h.online {
        facts.push(("state", "offline".into()));
    }
    let mut lines: Vec<Line> = facts.into_iter().map(|(k, v)| fact(k, v)).collect();
    let (told, inside) = text_port_lines(model, h);
    lines.extend(told);
    let width = usize::from(inner.width.saturating_sub(10));
    let spark = model
        .host_busy
        .get(&h.name)
        .map(|s| spark_text(s.iter(), width, u64::from(h.max_jobs.max(1))))
        .unwrap_or_default();
    lines.push(Line::from(vec![
        Span::styled(format!("{:>9} ", "busy"), Style::new().fg(Color::DarkGray)),
        Span::styled(spark, Style::new().fg(Color::Green)),
    ]));
    let here: Vec<&Job> = model
        .jobs
        .values()
        .filter(|j| j.server == Some(h.id) && j.state != "waiting")
        .collect();
    let mine: Vec<&Job> = model
        .jobs
        .values()
        .filter(|j| j.client == Some(h.id) && j.server != Some(h.id))
        .collect();
    let done: Vec<&Job> = model
        .history
        .iter()
        .rev()
        .filter(|j| {
            model.host_name(j, false).as_deref() == Some(&h.name)
                || model.host_name(j, true).as_deref() == Some(&h.name)
        })
        .collect();
    lines.extend(inside);
    let section = |lines: &mut Vec<Line>, title: String, jobs: &[&Job], empty: &str| {
        lines.push(Line::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ));
        if jobs.is_empty() {
            lines.push(Line::styled(
                format!("  {empty}"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        for j in jobs.iter().take(8) {
            let (tag, style) = state_tag(j);
            let time = dur(j
                .real_ms
                .or(j.end_ms.map(|e| e.saturating_sub(j.start_ms)))
                .unwrap_or(screen.now_ms.saturating_sub(j.start_ms)));
            let mut spans = vec![
                Span::raw("  "),
                Span::styled(format!("{tag:<5} "), style),
                Span::raw(format!("{time:>6} {}", short_file(&j.file))),
            ];
            let why = reason(j);
            if !why.is_empty() {
                spans.push(Span::styled(
                    format!(" ({why})"),
                    Style::new().fg(Color::Red),
                ));
            }
            lines.push(Line::from(spans));
        }
    };
    section(
        &mut lines,
        format!("Compiling here ({})", here.len()),
        &here,
        "nothing compiling on this host",
    );
    section(
        &mut lines,
        format!("Submitted, not finished ({})", mine.len()),
        &mine,
        "none waiting or compiling elsewhere",
    );
    section(
        &mut lines,
        "Recently finished".into(),
        &done,
        "no finished jobs seen yet",
    );
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One `key value` line of the host pane.
fn fact(k: &str, v: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{k:>9} "), Style::new().fg(Color::DarkGray)),
        Span::raw(v),
    ])
}

/// What the scheduler's text port tells of `h`, as the page's host panel
/// shows it: the facts (blocked, kept, installing), and the daemon's
/// `internals` once asked for (`i`). Nothing where icewatch does not read
/// the text port.
fn text_port_lines(model: &Model, h: &Host) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let Some(c) = &model.control else {
        return (Vec::new(), Vec::new());
    };
    let mut facts = Vec::new();
    if !c.answering {
        let why = c
            .error
            .as_ref()
            .map_or("not read yet".into(), |e| format!("not answering: {e}"));
        facts.push(fact("text port", why));
    }
    // The block list is known only from a read that was answered.
    if c.answering {
        let blocked = if c.blocked.contains(&h.name) {
            "yes: the scheduler keeps it out"
        } else {
            "no"
        };
        facts.push(fact("blocked", blocked.into()));
    }
    if c.kept.iter().any(|k| k.name == h.name) {
        let kept = "by icewatch: blocked again whenever the scheduler restarts";
        facts.push(fact("kept", kept.into()));
    }
    if let Some(s) = c.installing.get(&h.name) {
        facts.push(fact("installs", format!("an environment, for {s} s")));
    }
    let asked = match &model.internals {
        Some((name, asked)) if *name == h.name => asked,
        _ => {
            facts.push(fact("internals", "i asks the daemon".into()));
            return (facts, Vec::new());
        }
    };
    let mut inside = vec![Line::styled(
        "Internals",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let dim = Style::new().fg(Color::DarkGray);
    match asked {
        Asked::Asking => inside.push(Line::styled("  asking…", dim)),
        Asked::Failed(e) => {
            inside.push(Line::styled(format!("  {e}"), Style::new().fg(Color::Red)))
        }
        Asked::Answer(daemons) if daemons.is_empty() => {
            inside.push(Line::styled("  no daemon of that name is connected", dim))
        }
        Asked::Answer(daemons) => {
            for d in daemons {
                if !d.reporting {
                    inside.push(Line::styled(format!("  {} not reporting", d.name), dim));
                }
                for (k, v) in &d.fields {
                    inside.push(Line::from(vec![
                        Span::styled(format!("  {k}: "), dim),
                        Span::raw(v.clone()),
                    ]));
                }
            }
        }
    }
    (facts, inside)
}

fn footer_line(view: &View) -> Paragraph<'static> {
    let key = Style::new().add_modifier(Modifier::REVERSED);
    if view.editing {
        return Paragraph::new(Line::from(vec![
            Span::styled(" / ", key),
            Span::raw(format!(" {}▏ ", view.filter)),
            Span::styled(" Enter ", key),
            Span::raw(" keep "),
            Span::styled(" Esc ", key),
            Span::raw(" clear"),
        ]));
    }
    let mut spans = Vec::new();
    if !view.filter.is_empty() {
        spans.push(Span::styled(
            format!(" /{} (Esc clears) ", view.filter),
            Style::new().fg(Color::Yellow),
        ));
    }
    for (k, what) in [
        ("?", "help"),
        ("jk", "select"),
        ("hl", "sort"),
        ("r", "reverse"),
        ("Spc", "host"),
        ("/", "filter"),
        ("f", "jobs"),
        ("q", "quit"),
    ] {
        spans.push(Span::styled(format!(" {k} "), key));
        spans.push(Span::raw(format!("{what} ")));
    }
    Paragraph::new(Line::from(spans))
}

fn help(frame: &mut Frame<'_>, area: Rect) {
    let mut lines = Vec::new();
    for (k, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!(" {k:<20}"), Style::new().fg(Color::Cyan)),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::styled(
        "Host table",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    for c in COLUMNS {
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<8}", c.title()), Style::new().fg(Color::Cyan)),
            Span::raw(c.meaning()),
        ]));
    }
    let width = area.width.min(96);
    let height = area
        .height
        .min(u16::try_from(lines.len() + 2).unwrap_or(u16::MAX));
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" Keys (any key closes this help) "),
        ),
        popup,
    );
}

/// The end of a path, which says most: `…/module/file.c`.
fn short_file(path: &str) -> String {
    let parts: Vec<&str> = path.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [file, dir, _] => format!("…/{dir}/{file}"),
        _ => path.to_string(),
    }
}

/// A duration as people read it: `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 7 min`.
pub fn dur(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=59_999 => format!("{} s", ms / 1000),
        _ if ms < 3_600_000 => format!("{} min {} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn rate(per_min: f64) -> String {
    if per_min >= 100.0 {
        format!("{per_min:.0}")
    } else {
        format!("{per_min:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_paths_read_short() {
        assert_eq!(dur(850), "850 ms");
        assert_eq!(dur(4_200), "4.2 s");
        assert_eq!(dur(185_000), "3 min 5 s");
        assert_eq!(dur(7_620_000), "2 h 7 min");
        assert_eq!(short_file("/home/me/src/net/io.c"), "…/net/io.c");
        assert_eq!(short_file("io.c"), "io.c");
        assert_eq!(spark_text([0, 4, 8].iter(), 10, 8), " ▄█");
    }
}
