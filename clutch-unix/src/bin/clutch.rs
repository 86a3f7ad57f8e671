//! `clutch`: run any server as a supervised cluster of worker processes, and steer it
//! while it runs. See `clutch --help` and the README.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clutch_unix::control::{self, Request};
use clutch_unix::duration::parse_duration;
use clutch_unix::listen::{ListenAddr, ListenOptions};
use clutch_unix::{Cluster, ForwardSignals, Log, Readiness};
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
enum Command {
    /// Supervise PROGRAM as a cluster of workers sharing the listening sockets.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
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
workers get no listening socket; clutch warns about it at start.";

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
    /// Unix socket for `clutch status|reload|scale|stop`, created mode 0600.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
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
    /// Log lines as text, or as JSON (one object per line, each event named).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The program to supervise and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]...")]
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

fn parse_signals(text: &str) -> Result<ForwardSignals, String> {
    text.parse::<ForwardSignals>().map_err(|e| e.to_string())
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // Bare `clutch`: the whole usage, as a usage error (clap prints this kind on
            // stderr).
            let _ = error.print();
            return ExitCode::from(USAGE);
        }
        Err(error) if error.use_stderr() => {
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
            return ExitCode::from(USAGE);
        }
        Err(help_or_version) => {
            let _ = help_or_version.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
        Command::Status { control, output } => status(&control.control, output),
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

fn run(args: RunArgs) -> ExitCode {
    let (program, program_args) = args.command.split_first().expect("clap requires a program");
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
        .forward_signals(args.forward_signals)
        .kill_mode(args.kill_mode)
        .log(match args.log_format {
            LogFormat::Text => Log::Stderr,
            LogFormat::Json => Log::Json,
        });
    if let Some(workers) = args.workers {
        cluster.workers(workers as usize);
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
    let master = match cluster.supervise(program, program_args) {
        Ok(master) => master,
        // An invalid combination of settings (`--ready 90s` with the default 60 s boot
        // timeout, a zero duration): the command line's fault, found before any spawn.
        Err(error) if error.is_usage() => {
            complain(in_flags(&format!("{error:#}")));
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
        ("name:", "--name:"),
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
                "master {}: {}, {}/{} workers ready, generation {}{}",
                answer["pid"],
                answer["phase"].as_str().unwrap_or("?"),
                answer["ready"],
                answer["target"],
                answer["generation"],
                if answer["degraded"] == true {
                    format!(", degraded: {} slots failing", answer["failing_slots"])
                } else {
                    String::new()
                }
            );
            let _ = writeln!(
                text,
                "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8}",
                "ID", "SLOT", "PID", "STATE", "GEN", "UPTIME", "RESTARTS"
            );
            for w in answer["workers"].as_array().into_iter().flatten() {
                let uptime = Duration::from_millis(w["uptime_ms"].as_u64().unwrap_or(0));
                // (serde_json's Display ignores widths: format plain strings.)
                let number =
                    |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
                let _ = writeln!(
                    text,
                    "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8}",
                    number(&w["id"]),
                    number(&w["slot"]),
                    number(&w["pid"]),
                    w["state"].as_str().unwrap_or("?"),
                    number(&w["generation"]),
                    format!("{:.1}s", uptime.as_secs_f64()),
                    number(&w["restarts"])
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
