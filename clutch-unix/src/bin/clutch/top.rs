//! `clutch top`: a live view of a running cluster in the terminal (ratatui on
//! crossterm): the cluster's header, one row per worker, the last events; keys to
//! reload, scale and stop, each confirmed with `y`.
//!
//! Everything it learns arrives as a [`Message`] on one channel, from threads that each
//! block on one thing: the `status` poller (once a second, and soon after each event),
//! the event stream (`control::subscribe`), the keyboard, the signals that end it, and
//! each command under way. The main thread only draws and reacts, and sleeps between
//! messages: no busy loop. What is shown and what a key does is `view.rs`'s, as pure code.
//!
//! The terminal is restored on every way out: the end of [`top`] (quitting, the master
//! gone, an error), a panic (a hook restores it first), SIGTERM, SIGHUP and SIGINT.

mod view;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use clutch_unix::control::{self, Request};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{self, Event, KeyEvent};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use serde_json::Value;

use crate::{complain, STARTUP, USAGE};
use view::{Command, Outcome, View};

/// How often the workers are asked for when nothing happens.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// After an event, how long the poller waits for more before asking (a burst of events
/// makes one `status`).
const STATUS_SETTLE: Duration = Duration::from_millis(100);
/// How long one `status` may take.
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// What the main thread hears.
enum Message {
    Key(KeyEvent),
    /// The terminal's size changed: draw again.
    Resize,
    /// A `status` answer (or why there is none), and when it was asked for.
    Status(io::Result<Value>, Instant),
    Event(Value),
    /// The event stream ended: after the master's `shutdown` event, or with this error.
    StreamEnded {
        shut_down: bool,
        error: Option<String>,
    },
    /// A line for the user (a command's outcome, the master handed over).
    Note(String),
    /// No event stream (the master refused it): the end is `status`'s to tell.
    NoStream(String),
    /// SIGTERM, SIGHUP or SIGINT: leave.
    Signal,
}

/// Why `top` ends.
enum End {
    Quit,
    /// The master shut down.
    Stopped,
    /// The master is not answering any more.
    Gone(String),
}

/// Runs `clutch top` against the control socket at `path` until the user quits or the
/// master is gone.
pub(crate) fn top(path: &Path) -> ExitCode {
    // The master first: no terminal games when there is nothing to watch.
    let first = match control::send_patiently(path, Request::Status, Some(STATUS_WAIT)) {
        Ok(answer) if answer["ok"] == true => answer,
        Ok(answer) => {
            complain(answer["error"].as_str().unwrap_or("the master refused"));
            return ExitCode::from(STARTUP);
        }
        Err(error) => {
            complain(error);
            return ExitCode::from(STARTUP);
        }
    };
    if !io::stdout().is_terminal() {
        complain("top needs a terminal (for a script: clutch status, clutch events)");
        return ExitCode::from(USAGE);
    }
    let (messages, inbox) = mpsc::channel();
    let nudge = poll_status(path.to_owned(), messages.clone());
    read_events(path.to_owned(), messages.clone(), nudge.clone());
    read_keys(messages.clone());
    watch_signals(messages.clone());
    let mut view = View::new(path.display().to_string());
    view.status(first, Instant::now());
    let end = match Screen::enter() {
        Ok(screen) => {
            let end = run(&mut view, &inbox, &messages, path, &nudge);
            drop(screen);
            end
        }
        Err(error) => Err(error),
    };
    match end {
        Ok(End::Quit) => ExitCode::SUCCESS,
        Ok(End::Stopped) => {
            complain("the master stopped");
            ExitCode::SUCCESS
        }
        Ok(End::Gone(why)) => {
            complain(format_args!("the master is gone: {why}"));
            ExitCode::from(STARTUP)
        }
        Err(error) => {
            complain(format_args!("top: {error}"));
            ExitCode::from(STARTUP)
        }
    }
}

/// Draws, waits for messages, reacts; until the end.
fn run(
    view: &mut View,
    inbox: &Receiver<Message>,
    messages: &Sender<Message>,
    path: &Path,
    nudge: &Sender<()>,
) -> io::Result<End> {
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    // While the stream is on, it tells how the master ended (its socket file may be
    // gone before its last events are read); without it, `status` does.
    let mut streaming = true;
    loop {
        terminal.draw(|frame| view.render(frame))?;
        // (The poller sends at least once a second; the timeout is a backstop.)
        let first = match inbox.recv_timeout(STATUS_EVERY * 2) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(End::Quit),
        };
        // Everything that has arrived meanwhile, then one drawing.
        for message in std::iter::once(first).chain(inbox.try_iter()) {
            match message {
                Message::Key(key) => match view.key(key) {
                    Outcome::Nothing => {}
                    Outcome::Quit => return Ok(End::Quit),
                    Outcome::Run(command) => carry_out(command, path, messages, nudge),
                },
                Message::Resize => {}
                Message::Status(Ok(answer), at) if answer["ok"] == true => view.status(answer, at),
                Message::Status(Ok(answer), _) => {
                    view.note = Some(format!(
                        "status: {}",
                        answer["error"].as_str().unwrap_or("refused")
                    ));
                }
                Message::Status(Err(error), _) => {
                    let gone = matches!(
                        error.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    );
                    if gone && !streaming {
                        return Ok(End::Gone(error.to_string()));
                    }
                    view.note = Some(format!("status: {error}"));
                }
                Message::Event(event) => view.event(&event),
                Message::StreamEnded {
                    shut_down: true, ..
                } => return Ok(End::Stopped),
                Message::StreamEnded { error, .. } => {
                    return Ok(End::Gone(error.unwrap_or_else(|| {
                        "the event stream ended before its shutdown".to_owned()
                    })))
                }
                Message::Note(note) => view.note = Some(note),
                Message::NoStream(note) => {
                    streaming = false;
                    view.note = Some(note);
                }
                Message::Signal => return Ok(End::Quit),
            }
        }
    }
}

/// Carries out a confirmed command on a thread of its own (a reload waits for its end);
/// its outcome comes back as a note.
fn carry_out(command: Command, path: &Path, messages: &Sender<Message>, nudge: &Sender<()>) {
    let path = path.to_owned();
    let messages = messages.clone();
    let nudge = nudge.clone();
    std::thread::spawn(move || {
        let (request, wait) = match command {
            Command::Reload => (Request::Reload, None),
            Command::Scale(workers) => (Request::Scale { workers }, Some(STATUS_WAIT)),
            Command::Stop => (Request::Stop, None),
        };
        let note = match control::send_patiently(&path, request, wait) {
            Ok(answer) if answer["ok"] == true => match command {
                Command::Reload => format!(
                    "rolling restart finished: generation {} in {} ms",
                    answer["generation"], answer["took_ms"]
                ),
                Command::Scale(_) => format!("workers: {}", answer["workers"]),
                Command::Stop => "stopped".to_owned(),
            },
            Ok(answer) => format!(
                "{request}: {}",
                answer["error"].as_str().unwrap_or("refused")
            ),
            Err(error) => format!("{request}: {error}"),
        };
        let _ = messages.send(Message::Note(note));
        let _ = nudge.send(());
    });
}

/// The `status` poller: once every [`STATUS_EVERY`], and [`STATUS_SETTLE`] after a
/// nudge (an event, a command's end). Ends when the main thread is gone.
fn poll_status(path: PathBuf, messages: Sender<Message>) -> Sender<()> {
    let (nudge, nudged) = mpsc::channel::<()>();
    std::thread::spawn(move || loop {
        let at = Instant::now();
        let answer = control::send_patiently(&path, Request::Status, Some(STATUS_WAIT));
        if messages.send(Message::Status(answer, at)).is_err() {
            return;
        }
        match nudged.recv_timeout(STATUS_EVERY) {
            Ok(()) => {
                std::thread::sleep(STATUS_SETTLE);
                while nudged.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    });
    nudge
}

/// The event stream, each event also a nudge for the poller. A stream that ends with
/// the master's shutdown while another master answers on the socket (an upgrade handed
/// over to it) goes on with that one's.
fn read_events(path: PathBuf, messages: Sender<Message>, nudge: Sender<()>) {
    std::thread::spawn(move || loop {
        let master = master_pid(&path);
        let subscription = match control::subscribe(&path) {
            Ok(subscription) => subscription,
            Err(error) => {
                let _ = messages.send(Message::NoStream(format!("no event stream: {error}")));
                return;
            }
        };
        let mut shut_down = false;
        let mut error = None;
        for item in subscription {
            match item {
                Ok(event) => {
                    shut_down |= event["event"] == "shutdown";
                    let _ = nudge.send(());
                    if messages.send(Message::Event(event)).is_err() {
                        return;
                    }
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        if shut_down && error.is_none() {
            if let Some(successor) = master_pid(&path).filter(|&pid| Some(pid) != master) {
                let _ = messages.send(Message::Note(format!(
                    "the master handed over to a new one (pid {successor})"
                )));
                continue;
            }
        }
        let _ = messages.send(Message::StreamEnded { shut_down, error });
        return;
    });
}

/// The pid of the master answering at `path`, if one does.
fn master_pid(path: &Path) -> Option<u64> {
    control::send(path, Request::Status, Some(STATUS_WAIT))
        .ok()?
        .get("pid")?
        .as_u64()
}

fn read_keys(messages: Sender<Message>) {
    std::thread::spawn(move || loop {
        let message = match event::read() {
            Ok(Event::Key(key)) => Message::Key(key),
            Ok(Event::Resize(..)) => Message::Resize,
            Ok(_) => continue,
            Err(error) => Message::Note(format!("reading the keyboard: {error}")),
        };
        if messages.send(message).is_err() {
            return;
        }
    });
}

/// SIGTERM, SIGHUP (the terminal went away) and SIGINT end `top` the way `q` does, so
/// the terminal is restored.
fn watch_signals(messages: Sender<Message>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT]) else {
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = messages.send(Message::Signal);
        }
    });
}

/// The terminal in `top`'s state (raw mode, the alternate screen, no cursor) while this
/// lives; restored when it is dropped, and by the panic hook it installs.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        // From here on, dropping the guard undoes whatever was done.
        let screen = Self;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// The terminal as it was: cooked mode, the main screen, the cursor shown.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}
