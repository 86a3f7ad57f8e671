//! `clutch top`'s state and drawing, as pure code: what it knows (the last `status`
//! answer, the CPU each worker used between two of them, the last events, a command
//! waiting for its confirmation), what a key does to it, and how it is drawn. No
//! terminal, socket or clock of its own: `top.rs` feeds it, the tests draw it into
//! ratatui's `TestBackend`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

/// Events kept for the events pane (the newest are shown, as many as fit).
const EVENTS_KEPT: usize = 200;
/// What the view shows for a number the master did not give.
const ABSENT: &str = "–";

/// A command of the master's that a key asks for, once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// A rolling restart.
    Reload,
    /// Scale to this many workers.
    Scale(usize),
    /// Stop the master.
    Stop,
}

impl Command {
    /// The confirmation's question.
    fn question(self) -> String {
        match self {
            Self::Reload => "reload (rolling restart of every worker)?".to_owned(),
            Self::Scale(n) => format!("scale to {n} worker{}?", if n == 1 { "" } else { "s" }),
            Self::Stop => "stop the master and every worker?".to_owned(),
        }
    }
}

/// What a key leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing beyond the view's own change (if any): redraw.
    Nothing,
    /// Carry out this confirmed command.
    Run(Command),
    /// Leave.
    Quit,
}

/// One worker's CPU time at one `status`, to compare with the next.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    seconds: f64,
    at: Instant,
}

/// Everything `clutch top` shows.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// The control socket, for the title.
    pub(crate) control: String,
    /// The last `status` answer.
    status: Option<Value>,
    /// Each worker's last CPU sample, by id.
    samples: HashMap<u64, CpuSample>,
    /// Each worker's CPU use between its last two samples, in percent of one core.
    cpu: HashMap<u64, f64>,
    /// The newest events last, as text lines.
    events: VecDeque<String>,
    /// A command waiting for `y`.
    confirming: Option<Command>,
    /// A line for the user: a command's outcome, a connection problem.
    pub(crate) note: Option<String>,
}

impl View {
    /// A view of the master at `control` (its path, for the title).
    pub(crate) fn new(control: String) -> Self {
        Self {
            control,
            ..Self::default()
        }
    }

    /// A `status` answer, received `at`: the workers, and the CPU they used since the
    /// previous one (from `cpu_seconds`, when the master gives it).
    pub(crate) fn status(&mut self, answer: Value, at: Instant) {
        let mut samples = HashMap::new();
        let mut cpu = HashMap::new();
        for worker in answer["workers"].as_array().into_iter().flatten() {
            let (Some(id), Some(seconds)) = (worker["id"].as_u64(), worker["cpu_seconds"].as_f64())
            else {
                continue;
            };
            if let Some(before) = self.samples.get(&id) {
                let wall = at.saturating_duration_since(before.at).as_secs_f64();
                if wall > 0.0 {
                    cpu.insert(id, ((seconds - before.seconds) / wall * 100.0).max(0.0));
                }
            }
            samples.insert(id, CpuSample { seconds, at });
        }
        self.samples = samples;
        self.cpu = cpu;
        self.status = Some(answer);
    }

    /// An event from the stream (its JSON object).
    pub(crate) fn event(&mut self, event: &Value) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event_line(event));
    }

    /// The target worker count, once known.
    fn target(&self) -> Option<usize> {
        self.status.as_ref()?["target"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    }

    /// A key: a command asked for (then confirmed with `y`), or quitting.
    pub(crate) fn key(&mut self, key: KeyEvent) -> Outcome {
        if key.kind == KeyEventKind::Release {
            return Outcome::Nothing;
        }
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return Outcome::Quit;
        }
        if let Some(command) = self.confirming.take() {
            if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                self.note = Some(format!("{}…", running(command)));
                return Outcome::Run(command);
            }
            self.note = Some("cancelled".to_owned());
            return Outcome::Nothing;
        }
        let asked = match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Outcome::Quit,
            KeyCode::Char('r') => Some(Command::Reload),
            KeyCode::Char('s') => Some(Command::Stop),
            KeyCode::Char('+' | '=') => self.target().map(|n| Command::Scale(n + 1)),
            KeyCode::Char('-' | '_') => match self.target() {
                Some(n) if n > 1 => Some(Command::Scale(n - 1)),
                Some(_) => {
                    self.note = Some("one worker at least".to_owned());
                    None
                }
                None => None,
            },
            _ => None,
        };
        if let Some(command) = asked {
            self.confirming = Some(command);
        }
        Outcome::Nothing
    }

    /// Draws the view: the cluster's header, one row per worker, the last events.
    pub(crate) fn render(&self, frame: &mut Frame<'_>) {
        let workers = self.workers();
        let area = frame.area();
        // The table as tall as its rows (and borders, header), leaving the events five.
        let table_height = u16::try_from(workers.len() + 3)
            .unwrap_or(u16::MAX)
            .min(area.height.saturating_sub(5 + 5))
            .max(4);
        let [header, table, events] = Layout::vertical([
            Constraint::Length(5),
            Constraint::Length(table_height),
            Constraint::Min(3),
        ])
        .areas(area);
        frame.render_widget(self.header(), header);
        frame.render_widget(self.table(&workers), table);
        let shown = usize::from(events.height.saturating_sub(2));
        let lines: Vec<Line<'_>> = self
            .events
            .iter()
            .skip(self.events.len().saturating_sub(shown))
            .map(|l| Line::raw(l.as_str()))
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" events ")),
            events,
        );
    }

    fn header(&self) -> Paragraph<'_> {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut lines = Vec::new();
        match &self.status {
            Some(s) => {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => ABSENT.to_owned(),
                    v => v.to_string(),
                };
                let degraded = if s["degraded"] == true {
                    Span::styled(
                        format!("degraded: {} slots failing", text(&s["failing_slots"])),
                        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                    )
                } else {
                    Span::raw("not degraded")
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("master {}", text(&s["pid"])), bold),
                    Span::raw(format!(
                        " · {} · generation {} · containment: {}",
                        text(&s["phase"]),
                        text(&s["generation"]),
                        text(&s["containment"]),
                    )),
                ]));
                lines.push(Line::from(vec![
                    Span::raw(format!(
                        "workers: target {} · ready {} · live {} · ",
                        text(&s["target"]),
                        text(&s["ready"]),
                        text(&s["live"]),
                    )),
                    degraded,
                ]));
            }
            None => lines.extend([Line::raw("waiting for the master's status…"), Line::raw("")]),
        }
        lines.push(match (self.confirming, &self.note) {
            (Some(command), _) => Line::styled(
                format!("{} (y/n)", command.question()),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            (None, Some(note)) => Line::raw(note.as_str()),
            (None, None) => Line::raw(""),
        });
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" clutch top — {} ", self.control))
                .title_bottom(" r reload · + scale up · - scale down · s stop · q quit "),
        )
    }

    /// The workers, by slot and then id (a slot's successor after its worker).
    fn workers(&self) -> Vec<&Value> {
        let mut workers: Vec<&Value> = self
            .status
            .as_ref()
            .and_then(|s| s["workers"].as_array())
            .into_iter()
            .flatten()
            .collect();
        workers.sort_by_key(|w| (w["slot"].as_u64(), w["id"].as_u64()));
        workers
    }

    fn table(&self, workers: &[&Value]) -> Table<'_> {
        let number = |v: &Value| {
            v.as_u64()
                .map_or_else(|| ABSENT.to_owned(), |n| n.to_string())
        };
        let rows = workers.iter().map(|w| {
            let state = w["state"].as_str().unwrap_or("?");
            let colour = match state {
                "ready" => Color::Green,
                "spawning" | "booting" => Color::Yellow,
                _ => Color::Red,
            };
            let cpu = w["id"]
                .as_u64()
                .and_then(|id| self.cpu.get(&id))
                .map_or_else(|| ABSENT.to_owned(), |pct| format!("{pct:.1}"));
            let memory = w["memory_bytes"]
                .as_u64()
                .map_or_else(|| ABSENT.to_owned(), bytes);
            let note = match (w["recycling"].as_str(), w["stop_reason"].as_str()) {
                (Some(cause), _) => format!("recycling ({cause})"),
                (None, Some(reason)) => format!("leaving ({reason})"),
                (None, None) if w["successor"] == true => "successor".to_owned(),
                (None, None) => String::new(),
            };
            Row::new(vec![
                Cell::from(number(&w["slot"])),
                Cell::from(number(&w["id"])),
                Cell::from(number(&w["pid"])),
                Cell::from(number(&w["generation"])),
                Cell::from(state.to_owned()).style(Style::new().fg(colour)),
                Cell::from(
                    w["uptime_ms"]
                        .as_u64()
                        .map_or_else(|| ABSENT.to_owned(), |ms| uptime(Duration::from_millis(ms))),
                ),
                Cell::from(number(&w["restarts"])),
                Cell::from(cpu),
                Cell::from(memory),
                Cell::from(note),
            ])
        });
        let header = Row::new([
            "SLOT", "ID", "PID", "GEN", "STATE", "UPTIME", "RESTARTS", "CPU%", "MEM", "NOTE",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        Table::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(4),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
        )
        .header(header)
        .block(Block::bordered().title(format!(" workers ({}) ", workers.len())))
    }
}

/// What a confirmed command is doing, for the note line.
fn running(command: Command) -> String {
    match command {
        Command::Reload => "reloading".to_owned(),
        Command::Scale(n) => format!("scaling to {n}"),
        Command::Stop => "stopping".to_owned(),
    }
}

/// An event as a short line: its time of day, level, message and fields.
fn event_line(event: &Value) -> String {
    let full = crate::events::text(event);
    // `2026-12-02T10:03:11.123456Z` → `10:03:11`
    match event["timestamp"].as_str() {
        Some(stamp) if full.starts_with(stamp) => {
            let time = stamp
                .split_once('T')
                .map_or(stamp, |(_, t)| t.get(..8).unwrap_or(t));
            format!("{time}{}", &full[stamp.len()..])
        }
        _ => full,
    }
}

/// `12.3s`, `4m05s`, `2h03m`, `3d04h`.
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `512 B`, `12.3 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    fn screen(view: &View, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| view.render(f)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn worker(id: u64, slot: u64, cpu: Option<f64>, memory: Option<u64>) -> Value {
        let mut w = json!({
            "id": id, "slot": slot, "pid": 1000 + id, "state": "ready", "generation": 1,
            "uptime_ms": 65_000, "restarts": 0, "successor": false, "proven": true,
            "stop_reason": null, "recycling": null,
        });
        if let Some(cpu) = cpu {
            w["cpu_seconds"] = json!(cpu);
        }
        if let Some(memory) = memory {
            w["memory_bytes"] = json!(memory);
        }
        w
    }

    fn status(workers: Vec<Value>) -> Value {
        json!({
            "ok": true, "pid": 42, "phase": "running", "target": workers.len(),
            "ready": workers.len(), "live": workers.len(), "degraded": false,
            "failing_slots": 0, "generation": 1, "log_lines_dropped": 0,
            "containment": "group", "recycles": 0, "workers": workers,
        })
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::from(KeyCode::Char(c))
    }

    #[test]
    fn rows_show_every_worker_and_a_dash_for_what_the_master_does_not_say() {
        let mut view = View::new("/run/ctl.sock".into());
        view.status(
            status(vec![worker(2, 1, None, None), worker(1, 0, None, None)]),
            Instant::now(),
        );
        let text = screen(&view, 110, 20);
        assert!(text.contains("clutch top — /run/ctl.sock"), "{text}");
        assert!(
            text.contains("master 42 · running · generation 1 · containment: group"),
            "{text}"
        );
        assert!(
            text.contains("workers: target 2 · ready 2 · live 2 · not degraded"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("ready")).collect();
        // Slot order, then absent CPU and memory as dashes.
        let slot0 = text.find("1001").unwrap();
        let slot1 = text.find("1002").unwrap();
        assert!(slot0 < slot1, "{text}");
        assert!(
            rows.iter()
                .any(|r| r.contains("1m05s") && r.matches(ABSENT).count() >= 2),
            "{text}"
        );
    }

    #[test]
    fn cpu_is_the_difference_of_two_polls_over_wall_time() {
        let mut view = View::new("ctl".into());
        let start = Instant::now();
        view.status(
            status(vec![worker(1, 0, Some(10.0), Some(50 << 20))]),
            start,
        );
        assert!(view.cpu.is_empty(), "one sample is no rate");
        view.status(
            status(vec![worker(1, 0, Some(10.5), Some(50 << 20))]),
            start + Duration::from_secs(2),
        );
        assert!((view.cpu[&1] - 25.0).abs() < 1e-9, "{:?}", view.cpu);
        let text = screen(&view, 110, 20);
        assert!(text.contains("25.0"), "{text}");
        assert!(text.contains("50.0 MiB"), "{text}");
    }

    #[test]
    fn commands_wait_for_a_yes() {
        let mut view = View::new("ctl".into());
        view.status(
            status(vec![worker(1, 0, None, None), worker(2, 1, None, None)]),
            Instant::now(),
        );
        assert_eq!(view.key(key('+')), Outcome::Nothing);
        assert!(screen(&view, 110, 20).contains("scale to 3 workers? (y/n)"));
        assert_eq!(view.key(key('y')), Outcome::Run(Command::Scale(3)));
        assert_eq!(view.key(key('-')), Outcome::Nothing);
        assert_eq!(view.key(key('y')), Outcome::Run(Command::Scale(1)));
        assert_eq!(view.key(key('r')), Outcome::Nothing);
        assert_eq!(view.key(key('n')), Outcome::Nothing);
        assert_eq!(view.note.as_deref(), Some("cancelled"));
        assert_eq!(view.key(key('s')), Outcome::Nothing);
        assert!(screen(&view, 110, 20).contains("stop the master and every worker? (y/n)"));
        assert_eq!(view.key(key('y')), Outcome::Run(Command::Stop));
        assert_eq!(view.key(key('q')), Outcome::Quit);
        assert_eq!(view.key(KeyEvent::from(KeyCode::Esc)), Outcome::Quit);
        assert_eq!(
            view.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Outcome::Quit
        );
    }

    #[test]
    fn never_below_one_worker() {
        let mut view = View::new("ctl".into());
        view.status(status(vec![worker(1, 0, None, None)]), Instant::now());
        assert_eq!(view.key(key('-')), Outcome::Nothing);
        assert_eq!(view.key(key('y')), Outcome::Nothing, "nothing to confirm");
    }

    #[test]
    fn the_newest_events_show_at_the_bottom() {
        let mut view = View::new("ctl".into());
        for n in 0..300 {
            view.event(&json!({
                "timestamp": "2026-12-02T10:03:11.123456Z", "level": "INFO",
                "message": "worker ready", "event": "worker_ready", "worker": n,
                "target": "clutch_unix::engine::driver",
            }));
        }
        assert_eq!(view.events.len(), EVENTS_KEPT);
        let text = screen(&view, 110, 30);
        assert!(
            text.contains("10:03:11  INFO worker ready  worker=299"),
            "{text}"
        );
        assert!(!text.contains("worker=100 "), "{text}");
        assert!(text.contains("waiting for the master's status"), "{text}");
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(uptime(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(uptime(Duration::from_secs(245)), "4m05s");
        assert_eq!(uptime(Duration::from_secs(7380)), "2h03m");
        assert_eq!(uptime(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
