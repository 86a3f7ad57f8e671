//! `clutch`: run any server as a supervised cluster of worker processes, and steer it
//! while it runs. See `clutch --help` and the README.
//!
//! `settings.rs` gives every flag of `clutch run` an environment variable and a key in
//! a settings file; this file defines the commands and carries them out.

// The doc comments of the clap structs below are `clutch --help`'s text, written for a
// terminal: `[::1]:5000` there is an address, not a rustdoc link.
#![allow(rustdoc::broken_intra_doc_links)]

mod events;
mod settings;
#[cfg(feature = "tui")]
mod top;

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use clutch_unix::control::{self, Request};
use clutch_unix::duration::parse_duration;
use clutch_unix::listen::{ListenAddr, ListenOptions};
use clutch_unix::{
    Backoff, Cluster, CrashBudget, ForwardSignals, HangPolicy, Log, NotifySocketKind, Readiness,
    WorkerOutput,
};
use serde_json::Value;

/// Exit status for a command line that could not be used (as clap and sysexits' 64-ish
/// convention: 2).
const USAGE: u8 = 2;
/// Exit status when something prevented the start (bad program, address in use, …).
const STARTUP: u8 = 1;

/// Exit status of `clutch status` when the cluster is degraded: some slots keep failing
/// (their workers die at boot or in probation) while the others serve.
const DEGRADED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "clutch",
    version,
    about = "Run any server as a supervised cluster of worker processes",
    // Bare `clutch`: the usage, on stderr, exit 2 (as git does).
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// `run`'s flags are parsed once per process: their size is no concern.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Supervise PROGRAM as a cluster of workers sharing the listening sockets.
    #[command(
        after_help = RUN_AFTER_HELP,
        override_usage = "clutch run [OPTIONS] -- PROGRAM [ARGS]...\n       \
                          clutch run --config FILE [OPTIONS] [-- PROGRAM [ARGS]...]"
    )]
    Run(Box<RunArgs>),
    /// Show the workers of a running cluster (exit 3 when it is degraded: some slots keep
    /// failing while the others serve).
    Status {
        #[command(flatten)]
        control: ControlArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Rolling restart; waits until it finishes (exit 1, with the cause, if a new worker
    /// failed to boot or died in its probation).
    Reload {
        #[command(flatten)]
        control: ControlArg,
        /// Give up waiting after this long (default: as long as it takes).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Set the number of workers.
    Scale {
        /// The new worker count (1 to 4096).
        #[arg(value_parser = clap::value_parser!(u64).range(1..=4096))]
        workers: u64,
        #[command(flatten)]
        control: ControlArg,
    },
    /// Upgrade the master itself (as SIGUSR2): start a new master from the same path and
    /// arguments, hand it the sockets, and once its workers serve, stop the old ones.
    /// Waits until it ends: prints the new master's pid, or exits 1 with the cause (the
    /// old master then keeps serving, as before).
    Upgrade {
        #[command(flatten)]
        control: ControlArg,
        /// Give up waiting after this long (default: as long as it takes).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Print the master's events as they happen, until it exits (exit 0 after its
    /// shutdown; 1 if there is no master, or it dropped this client for reading too
    /// slowly). `--output json`: one object per line, as `clutch run --log-format json`
    /// logs it, at every level whatever the master's RUST_LOG.
    Events {
        #[command(flatten)]
        control: ControlArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// A live view of the cluster in the terminal: its state, one row per worker (CPU
    /// and memory when the master reports them), the last events. Keys: r reload,
    /// + and - scale, s stop (each asks for y to confirm), q, Esc or Ctrl-C quit.
    Top {
        #[command(flatten)]
        control: ControlArg,
    },
    /// Graceful shutdown; waits until the master is gone.
    Stop {
        #[command(flatten)]
        control: ControlArg,
        /// Give up waiting after this long (default: as long as it takes).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
}

/// The part of `clutch run --help` that no option covers.
const RUN_AFTER_HELP: &str = "\
Logging: the master logs to stderr (as text, or JSON with --log-format json), at the
level the RUST_LOG environment variable sets (tracing's EnvFilter syntax; default
`info`). For example:
  RUST_LOG=debug clutch run …          everything, the workers' STATUS= lines included
  RUST_LOG=clutch_unix=debug clutch run …   clutch's own debug lines only
  RUST_LOG=warn clutch run …           warnings and errors only

Without -l/--listen (and no sockets passed by a service manager, LISTEN_FDS) the
workers get no listening socket; clutch warns about it at start.

Settings: every option can also be set by its environment variable (CLUTCH_ and the
long name, upper-cased, - as _: --force-exit-timeout is CLUTCH_FORCE_EXIT_TIMEOUT) and
by its long name as a key of the TOML file that --config (or CLUTCH_CONFIG) names
(`force-exit-timeout = \"10s\"`; the program is `command = [\"./server\", \"--flag\"]`).
A flag beats its variable, which beats the file, which beats the default. A repeatable
option's variable is a comma-separated list (\\, is a comma inside an item), a switch's
true, false, 1 or 0. --print-config shows every setting and where it came from.";

#[derive(Args)]
struct ControlArg {
    /// The master's control socket.
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkerOutputArg {
    Inherit,
    Prefix,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum NotifySocketsArg {
    Abstract,
    Directory,
}

#[derive(Args)]
struct RunArgs {
    /// Workers to run (default: the number of CPUs).
    #[arg(short, long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: Option<u64>,
    /// A listening socket, repeatable: 127.0.0.1:5000, [::1]:5000, 0.0.0.0:80, unix:/path.
    /// Ignored when clutch itself is socket-activated (LISTEN_FDS).
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_listen)]
    listen: Vec<ListenAddr>,
    /// Listen backlog: connections the kernel queues before a worker accepts them (capped
    /// by net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65535))]
    backlog: u32,
    /// Permissions of unix-socket listeners, in octal (default: what the umask gives).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    unix_mode: Option<u32>,
    /// Process-title label (default: the program's name).
    #[arg(long)]
    name: Option<String>,
    /// Leave the master's process title alone.
    #[arg(long)]
    no_title: bool,
    /// Bound on a graceful stop, then SIGKILL: 500ms, 7.5s, 2m.
    #[arg(long, value_name = "D", default_value = "7500ms", value_parser = parse_duration)]
    force_exit_timeout: Duration,
    /// When a worker counts as ready: `notify` (it sends READY=1), `exec` (once it runs),
    /// or a duration D (READY=1, or alive for D, whichever comes first).
    #[arg(long, value_name = "MODE", default_value = "1s", value_parser = parse_ready)]
    ready: Readiness,
    /// How long a worker may take to become ready.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration)]
    boot_timeout: Duration,
    /// Probation after ready: a new worker must stay up this long before a rolling
    /// restart stops its old counterpart; a death within it is a young death (backoff,
    /// and a failure for the crash breaker); a worker past it is replaced at once.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_duration)]
    min_uptime: Duration,
    /// Workers replaced at once in a rolling restart.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    rollout_batch: u64,
    /// Respawn backoff: the delay before refilling a slot after its first young death
    /// (a boot failure or a death in probation).
    #[arg(long, value_name = "D", default_value = "100ms", value_parser = parse_duration)]
    backoff_initial: Duration,
    /// Respawn backoff: the delay's growth per further young death in a row (1 to 100).
    #[arg(long, value_name = "F", default_value = "1.5", value_parser = parse_factor)]
    backoff_factor: f64,
    /// Respawn backoff: the cap on the delay.
    #[arg(long, value_name = "D", default_value = "15s", value_parser = parse_duration)]
    backoff_max: Duration,
    /// Crash breaker: failures (boot failures, deaths in probation) it takes, at least
    /// the worker count, before the master gives up with exit 3, while no worker is ready.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    crash_failures: u32,
    /// Crash breaker: how long the cluster must have been failing, with no worker ready,
    /// before it gives up.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    crash_window: Duration,
    /// Hang detection: a worker that has sent a heartbeat (WATCHDOG=1) and then stays
    /// silent this long is hung; `off` disables it.
    #[arg(long, value_name = "D|off", default_value = "30s", value_parser = parse_hang_timeout)]
    hang_timeout: HangTimeout,
    /// Hang detection: the signal sent to a hung worker first, so it can dump its state
    /// (ABRT, QUIT, USR1, …); `none` kills it at once.
    #[arg(long, value_name = "SIG|none", default_value = "ABRT", value_parser = parse_hang_signal)]
    hang_signal: HangSignal,
    /// Hang detection: how long after that signal a hung worker is SIGKILLed.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_duration)]
    hang_grace: Duration,
    /// Unix socket for `clutch status|reload|scale|stop`, created mode 0600.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Serve Prometheus metrics at GET /metrics on ADDR (127.0.0.1:9100, unix:/path; port
    /// 0: the OS picks one, shown by `clutch status`), from the master itself.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    metrics: Option<ListenAddr>,
    /// Signals forwarded to every worker: USR1, USR2, both (USR1,USR2) or none. By
    /// default none: a program that does not handle them would die of them (their
    /// default action). A USR2 not forwarded upgrades the master (as `clutch upgrade`,
    /// and as in nginx and Unicorn); a USR1 not forwarded is logged and ignored.
    #[arg(long, value_name = "SIGNALS", default_value = "none", value_parser = parse_signals)]
    forward_signals: ForwardSignals,
    /// Which processes of a worker a graceful stop signals: `tree` (all it started, as
    /// systemd's KillMode=control-group) or `main` (only the worker, for programs that
    /// stop their own children). Either way what is left when the worker exits is killed.
    #[arg(long, value_name = "MODE", default_value = "tree")]
    kill_mode: clutch_unix::KillMode,
    /// Recycle a worker whose memory goes over SIZE (512M, 1.5G, 800K: powers of 1024):
    /// a fresh worker starts in its slot first, and the old one gets SIGTERM only once
    /// the new one has passed its probation (--min-uptime). Measured every
    /// --memory-check-interval: the worker's cgroup (its whole tree) where the memory
    /// controller reaches it, else its main process's resident set.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_worker_memory: Option<u64>,
    /// How often --max-worker-memory measures the workers (one wakeup of the master per
    /// interval; none at all without a memory limit).
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    memory_check_interval: Duration,
    /// Recycle every worker after it has run for D (plus its jitter), replaced as for
    /// --max-worker-memory: successor first.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    max_worker_age: Option<Duration>,
    /// The most each worker's age limit is lengthened by, drawn at random per worker so
    /// workers started together are not recycled together (default: a tenth of
    /// --max-worker-age; 0s turns it off).
    #[arg(long, value_name = "D", value_parser = parse_jitter)]
    max_worker_age_jitter: Option<Duration>,
    /// Log lines as text, or as JSON (one object per line, each event named).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The workers' stdout and stderr: `inherit` (they write to the master's own),
    /// `prefix` (each line as `[slot id pid] line`, to the master's stdout or stderr) or
    /// `json` (each line as one JSON object of the --log-format json schema, with
    /// worker, slot, pid, generation and stream). Lines over 16 KiB are cut; lines the
    /// master cannot write at once are dropped and counted (worker_lines_dropped).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = WorkerOutputArg::Inherit)]
    worker_output: WorkerOutputArg,
    /// Where each worker's NOTIFY_SOCKET is: `abstract` (an @clutch/… name in the abstract
    /// namespace: no file; a directory where such a name would not be private) or
    /// `directory` (a socket file in a private directory: for workers that enter a network
    /// namespace of their own, sd_notify clients that know only paths, and hosts whose
    /// other users must not reach the sockets at all).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = NotifySocketsArg::Abstract)]
    notify_sockets: NotifySocketsArg,
    /// Run the workers as USER (a name or a uid), with its groups from the user database;
    /// the master keeps its own credentials (switching needs a master running as root).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// The workers' group (a name or a gid; default: the --user's primary group).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The workers' working directory, entered as their user (default: the master's).
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,
    /// The workers' umask, in octal: 022, 027, 077 (default: the master's).
    #[arg(long, value_name = "MODE", value_parser = parse_umask)]
    umask: Option<u32>,
    /// A variable for the workers' environment, repeatable: --env KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Start the workers from an empty environment: only --env's variables, USER/LOGNAME/HOME
    /// with --user, and what clutch sets (LISTEN_FDS, NOTIFY_SOCKET, CLUTCH_WORKER_ID, …).
    #[arg(long)]
    env_clear: bool,
    /// Read settings from this TOML file: each key is a long flag (`workers = 4`,
    /// `listen = ["127.0.0.1:5000"]`), and `command` the program with its arguments. A
    /// flag beats its environment variable (CLUTCH_WORKERS, …), which beats the file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective settings, each with where it came from (flag, env, file,
    /// default), and exit without starting anything.
    #[arg(long)]
    print_config: bool,
    /// The format of --print-config: text (a settings file, sources as comments) or JSON.
    #[arg(long, value_enum, default_value_t = Output::Text, requires = "print_config")]
    output: Output,
    /// The program to supervise and its arguments, after `--` (or `command` in the
    /// settings file).
    #[arg(last = true, value_name = "PROGRAM [ARGS]...")]
    command: Vec<OsString>,
}

fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    ListenAddr::parse(text).map_err(|e| e.to_string())
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 660"))
}

fn parse_umask(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal umask such as 027"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_signals(text: &str) -> Result<ForwardSignals, String> {
    text.parse::<ForwardSignals>().map_err(|e| e.to_string())
}

/// `--hang-timeout`: a duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct HangTimeout(Option<Duration>);

/// `--hang-signal`: a signal the core can send (not KILL), or `none`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct HangSignal(Option<clutch_unix::Signal>);

fn parse_hang_timeout(text: &str) -> Result<HangTimeout, String> {
    if text == "off" {
        return Ok(HangTimeout(None));
    }
    parse_duration(text)
        .map(|d| HangTimeout(Some(d)))
        .map_err(|e| format!("{e}; or off"))
}

fn parse_hang_signal(text: &str) -> Result<HangSignal, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(HangSignal(None));
    }
    match clutch_unix::Signal::from_name(text) {
        Some(clutch_unix::Signal::Kill) => {
            Err("KILL leaves nothing to diagnose; use none to kill at once".to_owned())
        }
        Some(signal) => Ok(HangSignal(Some(signal))),
        None => Err(format!(
            "{text:?} is not a signal clutch sends (ABRT, QUIT, TERM, INT, HUP, USR1, USR2, …); or none"
        )),
    }
}

fn parse_factor(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && (1.0..=100.0).contains(f))
        .ok_or_else(|| format!("{text:?} is not a number from 1 to 100"))
}

fn parse_size(text: &str) -> Result<u64, String> {
    clutch_unix::size::parse_size(text).map_err(|e| e.to_string())
}

/// A duration that may be zero (`0s` or `0`: no jitter).
fn parse_jitter(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text).map_err(|e| e.to_string())
}

fn parse_ready(text: &str) -> Result<Readiness, String> {
    match text {
        "notify" => Ok(Readiness::Notify),
        "exec" => Ok(Readiness::Spawned),
        other => parse_duration(other)
            .map(Readiness::Delay)
            .map_err(|e| format!("{e}; or use notify or exec")),
    }
}

/// Says `clutch: {message}` on stderr. A stderr nobody reads is no reason to panic
/// (`eprintln!` would): the exit status still tells.
fn complain(message: impl fmt::Display) {
    // Through the log's sink: a master's last line must not block on a full pipe.
    clutch_unix::stderr_line(&format!("clutch: {message}"));
}

/// Writes a command's output to stdout and returns `code`. A reader that went away
/// (`clutch status | head -1`) is not a failure of the command: its exit status stays
/// what the command itself achieved, and nothing is said. Any other write error is.
fn emit(text: &str, code: ExitCode) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => code,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => code,
        Err(error) => {
            complain(format_args!("writing the output: {error}"));
            ExitCode::from(STARTUP)
        }
    }
}

/// clap's refusal as `clutch`'s: one line on stderr, exit 2 (or help and version on
/// stdout, exit 0).
fn refuse(error: &clap::Error) -> ExitCode {
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // Bare `clutch`: the whole usage, as a usage error (clap prints this kind on
        // stderr).
        let _ = error.print();
        return ExitCode::from(USAGE);
    }
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    // One line that names the problem (clap's first line), not a wall of usage.
    // ("…not provided:" continues on the next line: keep that one too.)
    let rendered = error.to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut message = lines
        .next()
        .unwrap_or("error: invalid command line")
        .to_owned();
    if message.ends_with(':') {
        message = format!("{message} {}", lines.next().unwrap_or(""));
    }
    complain(message.trim_start_matches("error: "));
    ExitCode::from(USAGE)
}

/// How `clutch run`'s command line was read: the command (its arguments as declared),
/// what was parsed, and the settings from the environment and the file.
struct RunSettings {
    command: clap::Command,
    matches: ArgMatches,
    layer: settings::Layer,
}

impl RunSettings {
    /// The core's refusal of the settings, in the words of the command line, with where
    /// the values it names came from if not from the command line.
    fn refusal(&self, error: &clutch_unix::Error) -> String {
        let effective = self.layer.report(&self.command, &self.matches);
        settings::with_sources(&in_flags(&format!("{error:#}")), &effective)
    }
}

/// The command line, with `clutch run`'s settings from the environment and the settings
/// file folded in (see `settings.rs`): the `run` command as parsed, and where each of its
/// values came from.
fn parse(argv: &[OsString]) -> Result<(Cli, Option<RunSettings>), ExitCode> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The worker count's default is this machine's: shown by --help and --print-config.
    let mut command = Cli::command().mut_subcommand("run", |run| {
        settings::Layer::document(run).mut_arg("workers", |arg| arg.default_value(cpus.to_string()))
    });
    // The arguments in their declared order, for --print-config (`mut_arg` moves the
    // argument it changes to the end).
    let declared = Cli::command()
        .find_subcommand("run")
        .expect("the run command")
        .clone();
    let mut layer = None;
    let run_args = argv.get(2..).unwrap_or_default();
    // (`clutch run --help` is read even when the settings file is not.)
    let wants_help = run_args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h");
    if argv.get(1).is_some_and(|a| a == "run") {
        let run = command.find_subcommand("run").expect("the run command");
        let loaded = if wants_help {
            settings::Layer::default()
        } else {
            settings::Layer::load(run, run_args, &|name| std::env::var_os(name)).map_err(
                |error| {
                    complain(error);
                    ExitCode::from(USAGE)
                },
            )?
        };
        command = command.mut_subcommand("run", |run| loaded.apply(run));
        layer = Some(loaded);
    }
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| refuse(&e))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| refuse(&e))?;
    let run = match (layer, matches.subcommand()) {
        (Some(layer), Some(("run", matches))) => Some(RunSettings {
            command: declared,
            matches: matches.clone(),
            layer,
        }),
        _ => None,
    };
    Ok((cli, run))
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, how) = match parse(&argv) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    match cli.command {
        Command::Run(args) => {
            let how = how.expect("run's settings");
            if args.print_config {
                return print_config(&how, &args);
            }
            // Read: the workers do not inherit them, so that a worker that is itself a
            // `clutch run` does not take this one's settings for its own.
            for name in settings::variables(&how.command) {
                // (Still one thread: nothing has been started yet.)
                std::env::remove_var(name);
            }
            run(*args, &how)
        }
        Command::Status { control, output } => status(&control.control, output),
        Command::Events { control, output } => events::events(&control.control, output),
        #[cfg(feature = "tui")]
        Command::Top { control } => top::top(&control.control),
        #[cfg(not(feature = "tui"))]
        Command::Top { .. } => {
            complain("top: this clutch was built without the `tui` feature");
            ExitCode::from(USAGE)
        }
        Command::Reload { control, timeout } => {
            steer(&control.control, Request::Reload, timeout, |answer| {
                format!(
                    "rolling restart finished: generation {} in {} ms",
                    answer["generation"], answer["took_ms"]
                )
            })
        }
        Command::Scale { workers, control } => {
            let request = Request::Scale {
                workers: workers as usize,
            };
            steer(
                &control.control,
                request,
                Some(Duration::from_secs(10)),
                |answer| format!("workers: {}", answer["workers"]),
            )
        }
        Command::Upgrade { control, timeout } => {
            steer(&control.control, Request::Upgrade, timeout, |answer| {
                format!("upgraded: the new master is pid {}", answer["pid"])
            })
        }
        Command::Stop { control, timeout } => {
            steer(&control.control, Request::Stop, timeout, |answer| {
                format!(
                    "stopped: {} (exit code {})",
                    answer["reason"].as_str().unwrap_or("?"),
                    answer["exit_code"]
                )
            })
        }
    }
}

/// `clutch run --print-config`: every setting, its value and where it came from.
fn print_config(run: &RunSettings, args: &RunArgs) -> ExitCode {
    let output = args.output;
    let layer = &run.layer;
    let effective = layer.report(&run.command, &run.matches);
    let mut text = String::new();
    match output {
        Output::Json => {
            let object = serde_json::json!({
                "config": layer.file.as_ref().map(|p| p.display().to_string()),
                "settings": effective.iter().map(settings::Effective::json).collect::<Vec<_>>(),
            });
            let _ = writeln!(text, "{object}");
        }
        Output::Text => {
            let _ = writeln!(
                text,
                "# clutch run's effective settings (a flag beats its environment variable, \
                 which beats the settings file, which beats the default)"
            );
            if let Some(path) = &layer.file {
                let _ = writeln!(text, "# settings file: {}", path.display());
            }
            let lines: Vec<(String, String)> = effective
                .iter()
                .map(|s| {
                    let setting = match s.toml() {
                        Some(value) => format!("{} = {value}", s.spec.key),
                        None => format!("# {} (unset)", s.spec.key),
                    };
                    (setting, s.source.to_string())
                })
                .collect();
            let width = lines.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
            for (setting, source) in lines {
                let _ = writeln!(text, "{setting:<width$}  # {source}");
            }
        }
    }
    // Refused as `clutch run` would refuse it, after the settings that explain why.
    let program = args
        .command
        .first()
        .map_or("server".as_ref(), OsString::as_os_str);
    let code = match cluster(args, program).check_exec() {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            let code = emit(&text, ExitCode::from(USAGE));
            complain(run.refusal(&error));
            return code;
        }
    };
    emit(&text, code)
}

/// The cluster `args` describe, for `program` (whose file name is the default title
/// label).
fn cluster(args: &RunArgs, program: &std::ffi::OsStr) -> clutch_unix::ClusterBuilder {
    let mut cluster = Cluster::builder();
    let name = args.name.clone().unwrap_or_else(|| {
        std::path::Path::new(program)
            .file_name()
            .map_or_else(|| "server".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    cluster
        .name(name)
        .title(!args.no_title)
        .force_exit_timeout(args.force_exit_timeout)
        .readiness(args.ready)
        .boot_timeout(args.boot_timeout)
        .min_uptime(args.min_uptime)
        .rollout_batch(args.rollout_batch as usize)
        .backoff(Backoff {
            initial: args.backoff_initial,
            factor: args.backoff_factor,
            max: args.backoff_max,
        })
        .crash_budget(CrashBudget {
            failures: args.crash_failures,
            window: args.crash_window,
        })
        .hang(HangPolicy {
            timeout: args.hang_timeout.0,
            signal: args.hang_signal.0,
            grace: args.hang_grace,
        })
        .forward_signals(args.forward_signals)
        .kill_mode(args.kill_mode)
        .max_worker_memory(args.max_worker_memory)
        .memory_check_interval(args.memory_check_interval)
        .max_worker_age(args.max_worker_age)
        .worker_output(match args.worker_output {
            WorkerOutputArg::Inherit => WorkerOutput::Inherit,
            WorkerOutputArg::Prefix => WorkerOutput::Prefix,
            WorkerOutputArg::Json => WorkerOutput::Json,
        })
        .notify_sockets(match args.notify_sockets {
            NotifySocketsArg::Abstract => NotifySocketKind::Abstract,
            NotifySocketsArg::Directory => NotifySocketKind::Directory,
        })
        .log(match args.log_format {
            LogFormat::Text => Log::Stderr,
            LogFormat::Json => Log::Json,
        });
    if let Some(workers) = args.workers {
        cluster.workers(workers as usize);
    }
    if let Some(jitter) = args.max_worker_age_jitter {
        cluster.max_worker_age_jitter(jitter);
    }
    for addr in &args.listen {
        cluster.listen(addr.clone());
    }
    let mut options = ListenOptions::default();
    options.backlog = args.backlog;
    options.unix_mode = args.unix_mode;
    cluster.listen_options(options);
    if let Some(path) = &args.control {
        cluster.control(path);
    }
    if let Some(addr) = &args.metrics {
        cluster.metrics(addr.clone());
    }
    if let Some(user) = &args.user {
        cluster.user(user);
    }
    if let Some(group) = &args.group {
        cluster.group(group);
    }
    if let Some(dir) = &args.chdir {
        cluster.current_dir(dir);
    }
    if let Some(mask) = args.umask {
        cluster.umask(mask);
    }
    for (key, value) in &args.env {
        cluster.env(key, value);
    }
    if args.env_clear {
        cluster.env_clear();
    }
    cluster
}

fn run(args: RunArgs, how: &RunSettings) -> ExitCode {
    let Some((program, program_args)) = args.command.split_first() else {
        complain(
            "the program to supervise is missing: clutch run [OPTIONS] -- PROGRAM [ARGS]... \
             (or `command` in the settings file)",
        );
        return ExitCode::from(USAGE);
    };
    let mut cluster = cluster(&args, program);
    let master = match cluster.supervise(program, program_args) {
        Ok(master) => master,
        // An invalid combination of settings (`--ready 90s` with the default 60 s boot
        // timeout, a zero duration): the command line's fault, found before any spawn.
        Err(error) if error.is_usage() => {
            complain(how.refusal(&error));
            return ExitCode::from(USAGE);
        }
        // The whole chain, each part once: what failed, why, the OS error.
        Err(error) => {
            complain(format_args!("{error:#}"));
            return ExitCode::from(STARTUP);
        }
    };
    if master.listeners().is_empty() {
        // (`supervise` has installed the log subscriber by now.)
        tracing::warn!(
            "no listening socket: neither -l/--listen nor sockets from a service manager \
             (LISTEN_FDS); the workers get none"
        );
    }
    match master.run() {
        Ok(reason) => {
            if reason.code() != 0 {
                complain(reason.describe());
            }
            ExitCode::from(reason.code())
        }
        Err(error) => {
            complain(format_args!("{error:#}"));
            ExitCode::from(STARTUP)
        }
    }
}

/// A configuration error in the words of the command line: the core names its settings
/// (`boot_timeout`), the user typed flags (`--boot-timeout`).
fn in_flags(message: &str) -> String {
    [
        ("force_exit_timeout", "--force-exit-timeout"),
        ("boot_timeout", "--boot-timeout"),
        ("min_uptime", "--min-uptime"),
        ("readiness delay", "--ready"),
        ("boot timeout", "--boot-timeout"),
        ("rollout batch", "--rollout-batch"),
        ("max_worker_age_jitter", "--max-worker-age-jitter"),
        ("max_worker_age", "--max-worker-age"),
        ("memory_check_interval", "--memory-check-interval"),
        ("backoff.initial", "--backoff-initial"),
        ("backoff.max", "--backoff-max"),
        ("backoff: the cap", "--backoff-max"),
        ("the initial delay", "the --backoff-initial"),
        ("crash_budget.window", "--crash-window"),
        ("hang.timeout", "--hang-timeout"),
        ("hang.grace", "--hang-grace"),
        ("name:", "--name:"),
        ("user:", "--user:"),
        ("group:", "--group:"),
        ("give the group too", "give --group too"),
        ("umask:", "--umask:"),
        ("env:", "--env:"),
    ]
    .iter()
    .fold(message.to_owned(), |text, (setting, flag)| {
        text.replace(setting, flag)
    })
}

fn ask(
    path: &std::path::Path,
    request: Request,
    wait: Option<Duration>,
) -> Result<Value, ExitCode> {
    match control::send_patiently(path, request, wait) {
        Ok(answer) if answer["ok"] == Value::Bool(true) => Ok(answer),
        Ok(answer) => {
            complain(answer["error"].as_str().unwrap_or("the master refused"));
            Err(ExitCode::from(STARTUP))
        }
        Err(error) => {
            complain(error);
            Err(ExitCode::from(STARTUP))
        }
    }
}

fn steer(
    path: &std::path::Path,
    request: Request,
    wait: Option<Duration>,
    describe: impl Fn(&Value) -> String,
) -> ExitCode {
    match ask(path, request, wait) {
        Ok(answer) => emit(&format!("{}\n", describe(&answer)), ExitCode::SUCCESS),
        Err(code) => code,
    }
}

fn status(path: &std::path::Path, output: Output) -> ExitCode {
    let answer = match ask(path, Request::Status, Some(Duration::from_secs(10))) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    // Formatting into a String cannot fail: the `let _`s below drop an infallible Ok.
    let mut text = String::new();
    match output {
        Output::Json => {
            let _ = writeln!(text, "{answer}");
        }
        Output::Text => {
            let _ = writeln!(
                text,
                "master {}: {}, {}/{} workers ready, generation {}{}{}{}{}",
                answer["pid"],
                answer["phase"].as_str().unwrap_or("?"),
                answer["ready"],
                answer["target"],
                answer["generation"],
                if answer["degraded"] == true {
                    format!(", degraded: {} slots failing", answer["failing_slots"])
                } else {
                    String::new()
                },
                match answer["recycles"].as_u64() {
                    Some(n) if n > 0 => format!(", {n} recycles"),
                    _ => String::new(),
                },
                match answer["worker_lines_dropped"].as_u64() {
                    Some(n) if n > 0 => format!(", {n} worker output lines dropped"),
                    _ => String::new(),
                },
                match answer["metrics"].as_str() {
                    Some(addr) => format!(", metrics on {addr}"),
                    None => String::new(),
                }
            );
            let _ = writeln!(
                text,
                "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8} {:>9} {:>9}  NOTE",
                "ID", "SLOT", "PID", "STATE", "GEN", "UPTIME", "RESTARTS", "CPU", "MEM"
            );
            for w in answer["workers"].as_array().into_iter().flatten() {
                let uptime = Duration::from_millis(w["uptime_ms"].as_u64().unwrap_or(0));
                // (serde_json's Display ignores widths: format plain strings.)
                let number =
                    |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
                let note = match (w["recycling"].as_str(), w["successor"] == true) {
                    (Some(cause), _) => format!("recycling ({cause})"),
                    (None, true) => "successor".to_owned(),
                    (None, false) => String::new(),
                };
                let cpu = w["cpu_seconds"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}s"));
                let memory = w["memory_bytes"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), human_bytes);
                let _ = writeln!(
                    text,
                    "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8} {:>9} {:>9}  {}",
                    number(&w["id"]),
                    number(&w["slot"]),
                    number(&w["pid"]),
                    w["state"].as_str().unwrap_or("?"),
                    number(&w["generation"]),
                    format!("{:.1}s", uptime.as_secs_f64()),
                    number(&w["restarts"]),
                    cpu,
                    memory,
                    note
                );
            }
        }
    }
    let code = if answer["degraded"] == true {
        ExitCode::from(DEGRADED)
    } else {
        ExitCode::SUCCESS
    };
    emit(&text, code)
}

/// A size as `clutch status` shows it: `512K`, `12.5M`, `1.2G` (powers of 1024, as
/// `--max-worker-memory` reads them).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    let mut value = bytes as f64 / 1024.0;
    if value < 1.0 {
        return format!("{bytes}B");
    }
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_memory_flag_writes_them() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(5 << 20), "5.0M");
        assert_eq!(human_bytes(300 << 20), "300M");
        assert_eq!(human_bytes(3 << 30), "3.0G");
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["clutch", "run"]
            .iter()
            .chain(args)
            .chain(&["--", "server"]);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            _ => unreachable!("a run command"),
        }
    }

    /// The core's knobs default on the command line to what the core itself defaults
    /// to. (Two defaults differ on purpose, as the README says: `--ready 1s`, and no
    /// forwarded signals.)
    #[test]
    fn the_flags_default_to_the_cores_defaults() {
        let args = run_args(&[]);
        let core = clutch_unix::Config::builder().build().unwrap();
        assert_eq!(args.force_exit_timeout, core.force_exit_timeout());
        assert_eq!(args.boot_timeout, core.boot_timeout());
        assert_eq!(args.min_uptime, core.min_uptime());
        assert_eq!(args.rollout_batch as usize, core.rollout_batch());
        let backoff = Backoff {
            initial: args.backoff_initial,
            factor: args.backoff_factor,
            max: args.backoff_max,
        };
        assert_eq!(&backoff, core.backoff());
        let budget = CrashBudget {
            failures: args.crash_failures,
            window: args.crash_window,
        };
        assert_eq!(&budget, core.crash_budget());
        let hang = HangPolicy {
            timeout: args.hang_timeout.0,
            signal: args.hang_signal.0,
            grace: args.hang_grace,
        };
        assert_eq!(&hang, core.hang());
    }

    /// Every argument of `clutch run` has an environment and a file form (a flag added
    /// with an action the settings layer cannot express fails here), and no two share
    /// a variable, nor does one take a variable clutch already reads or sets.
    #[test]
    fn every_run_flag_has_a_variable_and_a_key() {
        let run = Cli::command().find_subcommand("run").unwrap().clone();
        let specs = settings::specs(&run);
        assert!(specs.len() >= 24, "{specs:?}");
        let mut seen = std::collections::BTreeSet::new();
        for spec in &specs {
            match &spec.env {
                Some(env) => {
                    assert_eq!(spec.flag.as_deref(), Some(&*format!("--{}", spec.key)));
                    assert!(seen.insert(env.clone()), "{env} twice");
                    for taken in [
                        settings::CONFIG_ENV,
                        clutch_unix::CONTAINMENT_ENV,
                        "CLUTCH_WORKER_ID",
                        "CLUTCH_WORKER_SLOT",
                    ] {
                        assert_ne!(env, taken, "--{} would read {taken}", spec.key);
                    }
                }
                None => assert_eq!(spec.key, "command", "only the program has no variable"),
            }
        }
        assert!(settings::variables(&run).contains(&settings::CONFIG_ENV.to_owned()));
    }

    #[test]
    fn hang_detection_can_be_turned_off_and_kill_at_once() {
        let args = run_args(&["--hang-timeout", "off", "--hang-signal", "none"]);
        assert_eq!(args.hang_timeout, HangTimeout(None));
        assert_eq!(args.hang_signal, HangSignal(None));
        let args = run_args(&["--hang-signal", "sigquit", "--hang-timeout", "5s"]);
        assert_eq!(
            args.hang_signal,
            HangSignal(Some(clutch_unix::Signal::Quit))
        );
        assert_eq!(args.hang_timeout, HangTimeout(Some(Duration::from_secs(5))));
        for bad in [
            &["--hang-signal", "KILL"][..],
            &["--hang-signal", "SIGFOO"],
            &["--hang-timeout", "never"],
            &["--backoff-factor", "0.5"],
            &["--backoff-factor", "NaN"],
            &["--backoff-factor", "101"],
            &["--crash-failures", "0"],
        ] {
            let argv = ["clutch", "run"].iter().chain(bad).chain(&["--", "x"]);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
