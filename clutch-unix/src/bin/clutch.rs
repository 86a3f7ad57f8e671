//! `clutch`: run any server as a supervised cluster of worker processes, and steer it
//! while it runs. See `clutch --help` and the README.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clutch_unix::control::{self, Request};
use clutch_unix::duration::parse_duration;
use clutch_unix::listen::{ListenAddr, ListenOptions};
use clutch_unix::{Cluster, Log, Readiness};
use serde_json::Value;

/// Exit status for a command line that could not be used (as clap and sysexits' 64-ish
/// convention: 2).
const USAGE: u8 = 2;
/// Exit status when something prevented the start (bad program, address in use, …).
const STARTUP: u8 = 1;

#[derive(Parser)]
#[command(
    name = "clutch",
    version,
    about = "Run any server as a supervised cluster of worker processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise PROGRAM as a cluster of workers sharing the listening sockets.
    Run(RunArgs),
    /// Show the workers of a running cluster.
    Status {
        #[command(flatten)]
        control: ControlArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Rolling restart; waits until it finishes (exit 1 if the new workers failed to boot).
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
    /// Graceful shutdown; waits until the master is gone.
    Stop {
        #[command(flatten)]
        control: ControlArg,
        /// Give up waiting after this long (default: as long as it takes).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
}

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
    /// Workers replaced at once in a rolling restart.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    rollout_batch: u64,
    /// Unix socket for `clutch status|reload|scale|stop`, created mode 0600.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
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

fn parse_ready(text: &str) -> Result<Readiness, String> {
    match text {
        "notify" => Ok(Readiness::Notify),
        "exec" => Ok(Readiness::Spawned),
        other => parse_duration(other)
            .map(Readiness::Delay)
            .map_err(|e| format!("{e}; or use notify or exec")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
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
            eprintln!("clutch: {}", message.trim_start_matches("error: "));
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
        .rollout_batch(args.rollout_batch as usize)
        .log(match args.log_format {
            LogFormat::Text => Log::Stderr,
            LogFormat::Json => Log::Json,
        });
    if let Some(workers) = args.workers {
        cluster.workers(workers as usize);
    }
    for addr in &args.listen {
        cluster.listen(addr.to_string());
    }
    let mut options = ListenOptions::default();
    options.backlog = args.backlog;
    options.unix_mode = args.unix_mode;
    cluster.listen_options(options);
    if let Some(path) = &args.control {
        cluster.control(path);
    }
    match cluster.supervise(program, program_args) {
        Ok(master) => match master.run() {
            Ok(reason) => {
                if reason.code() != 0 {
                    eprintln!("clutch: {}", reason.describe());
                }
                ExitCode::from(reason.code())
            }
            Err(error) => {
                eprintln!("clutch: {error}");
                ExitCode::from(STARTUP)
            }
        },
        Err(error) => {
            eprintln!("clutch: {error}");
            ExitCode::from(STARTUP)
        }
    }
}

fn ask(
    path: &std::path::Path,
    request: Request,
    wait: Option<Duration>,
) -> Result<Value, ExitCode> {
    match control::send(path, request, wait) {
        Ok(answer) if answer["ok"] == Value::Bool(true) => Ok(answer),
        Ok(answer) => {
            eprintln!(
                "clutch: {}",
                answer["error"].as_str().unwrap_or("the master refused")
            );
            Err(ExitCode::from(STARTUP))
        }
        Err(error) => {
            eprintln!("clutch: {error}");
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
        Ok(answer) => {
            println!("{}", describe(&answer));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn status(path: &std::path::Path, output: Output) -> ExitCode {
    let answer = match ask(path, Request::Status, Some(Duration::from_secs(10))) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match output {
        Output::Json => println!("{answer}"),
        Output::Text => {
            println!(
                "master {}: {}, {}/{} workers ready, generation {}",
                answer["pid"],
                answer["phase"].as_str().unwrap_or("?"),
                answer["ready"],
                answer["target"],
                answer["generation"]
            );
            println!(
                "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8}",
                "ID", "SLOT", "PID", "STATE", "GEN", "UPTIME", "RESTARTS"
            );
            for w in answer["workers"].as_array().into_iter().flatten() {
                let uptime = Duration::from_millis(w["uptime_ms"].as_u64().unwrap_or(0));
                // (serde_json's Display ignores widths: format plain strings.)
                let text = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
                println!(
                    "{:>6} {:>5} {:>8} {:<9} {:>4} {:>10} {:>8}",
                    text(&w["id"]),
                    text(&w["slot"]),
                    text(&w["pid"]),
                    w["state"].as_str().unwrap_or("?"),
                    text(&w["generation"]),
                    format!("{:.1}s", uptime.as_secs_f64()),
                    text(&w["restarts"])
                );
            }
        }
    }
    ExitCode::SUCCESS
}
