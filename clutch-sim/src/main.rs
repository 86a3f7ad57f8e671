//! The simulator's command line: run a campaign of seeds, or replay one.
//!
//! ```text
//! clutch-sim --seeds N [--start S] [--jobs J] [--check-determinism]
//! clutch-sim --seed S [--trace]
//! clutch-sim --bytes FILE [--trace]      (replay a fuzz input for `simulator`)
//! ```

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clutch_sim::rng::{ByteEntropy, Rng};
use clutch_sim::{Coverage, Failure, Sim};

const USAGE: &str = "\
usage: clutch-sim --seeds N [--start S] [--jobs J] [--check-determinism]
       clutch-sim --seed S [--trace]
       clutch-sim --bytes FILE [--trace]";

#[derive(Debug, Default)]
struct Args {
    seeds: Option<u64>,
    start: u64,
    seed: Option<u64>,
    bytes: Option<String>,
    trace: bool,
    check_determinism: bool,
    jobs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        jobs: 1,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    let number = |it: &mut dyn Iterator<Item = String>, flag: &str| -> Result<u64, String> {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => args.seeds = Some(number(&mut it, "--seeds")?),
            "--start" => args.start = number(&mut it, "--start")?,
            "--seed" => args.seed = Some(number(&mut it, "--seed")?),
            "--jobs" => args.jobs = number(&mut it, "--jobs")?.max(1) as usize,
            "--bytes" => args.bytes = Some(it.next().ok_or("--bytes needs a file")?),
            "--trace" => args.trace = true,
            "--check-determinism" => args.check_determinism = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("clutch-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.bytes {
        return replay_bytes(path, args.trace);
    }
    if let Some(seed) = args.seed {
        return replay_seed(seed, args.trace, args.check_determinism);
    }
    campaign(&args)
}

fn replay_seed(seed: u64, trace: bool, check_determinism: bool) -> ExitCode {
    // One handle for everything, write errors ignored: `--trace | head` must not panic.
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let _ = writeln!(out, "seed {seed}");
    let result = if trace {
        clutch_sim::replay(seed, &mut out)
    } else {
        clutch_sim::run_seed(seed)
    };
    let code = match result {
        Ok(outcome) => {
            let _ = writeln!(
                out,
                "seed {seed} passed: {} events in {:?} simulated, exit {:?}, fingerprint {:016x}",
                outcome.events, outcome.simulated, outcome.exit, outcome.fingerprint
            );
            let again = || clutch_sim::run_seed(seed).map(|o| o.fingerprint);
            if !check_determinism {
                ExitCode::SUCCESS
            } else if again() == Ok(outcome.fingerprint) {
                let _ = writeln!(out, "second run: same fingerprint");
                ExitCode::SUCCESS
            } else {
                let _ = writeln!(
                    out,
                    "seed {seed} is NOT deterministic: second run gave {:?}",
                    again()
                );
                ExitCode::FAILURE
            }
        }
        Err(failure) => {
            let _ = writeln!(out, "{failure}");
            ExitCode::FAILURE
        }
    };
    let _ = out.flush();
    code
}

fn replay_bytes(path: &str, trace: bool) -> ExitCode {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("clutch-sim: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let sink: Option<&mut dyn Write> = if trace { Some(&mut out) } else { None };
    let result = Sim::new(Rng::new(ByteEntropy::new(&data)), sink).run();
    let _ = out.flush();
    drop(out);
    match result {
        Ok(outcome) => {
            println!("{path} passed: {} events", outcome.events);
            ExitCode::SUCCESS
        }
        Err(violation) => {
            println!("{path} failed: {violation}");
            ExitCode::FAILURE
        }
    }
}

/// Totals shared by the campaign's threads.
#[derive(Default)]
struct Totals {
    done: AtomicU64,
    events: AtomicU64,
    simulated_ms: AtomicU64,
    failures: Mutex<Vec<Failure>>,
    coverage: Mutex<Coverage>,
    /// The seed with the most events, and how many.
    largest: Mutex<(u64, u64)>,
}

fn campaign(args: &Args) -> ExitCode {
    let count = args.seeds.unwrap_or(1000);
    let start = args.start;
    println!(
        "clutch-sim: {count} seeds from {start} on {} thread(s){}",
        args.jobs,
        if args.check_determinism {
            ", each run twice"
        } else {
            ""
        }
    );
    let totals = Totals::default();
    let next = AtomicU64::new(0);
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                let mut coverage = Coverage::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let seed = start.wrapping_add(i);
                    match run_checked(seed, args.check_determinism) {
                        Ok(outcome) => {
                            totals.events.fetch_add(outcome.events, Ordering::Relaxed);
                            totals
                                .simulated_ms
                                .fetch_add(outcome.simulated.as_millis() as u64, Ordering::Relaxed);
                            coverage.add(&outcome.coverage);
                            let mut largest = totals.largest.lock().expect("lock");
                            if outcome.events > largest.1 {
                                *largest = (seed, outcome.events);
                            }
                        }
                        Err(failure) => {
                            eprintln!("{failure}");
                            totals.failures.lock().expect("lock").push(failure);
                        }
                    }
                    totals.done.fetch_add(1, Ordering::Relaxed);
                }
                totals.coverage.lock().expect("lock").add(&coverage);
            });
        }
        // Progress, from the scope's own thread.
        let mut last = Instant::now();
        while totals.done.load(Ordering::Relaxed) < count {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                progress(&totals, count, began.elapsed());
            }
        }
    });
    let elapsed = began.elapsed();
    progress(&totals, count, elapsed);
    let failures = totals.failures.into_inner().expect("lock");
    let events = totals.events.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    println!(
        "{count} seeds in {secs:.1} s: {:.0} seeds/s, {:.0} events/s ({events} events, {:.1} h simulated)",
        count as f64 / secs,
        events as f64 / secs,
        totals.simulated_ms.load(Ordering::Relaxed) as f64 / 3.6e6,
    );
    let (seed, most) = totals.largest.into_inner().expect("lock");
    println!("largest world: seed {seed}, {most} events");
    println!("coverage: {}", totals.coverage.into_inner().expect("lock"));
    if failures.is_empty() {
        println!("all seeds passed");
        ExitCode::SUCCESS
    } else {
        println!("{} seed(s) FAILED; the first ones:", failures.len());
        let mut sorted = failures;
        sorted.sort_by_key(|f| f.seed);
        for failure in sorted.iter().take(10) {
            println!("{failure}");
        }
        ExitCode::FAILURE
    }
}

fn run_checked(seed: u64, check_determinism: bool) -> Result<clutch_sim::Outcome, Failure> {
    let outcome = clutch_sim::run_seed(seed)?;
    if check_determinism {
        let again = clutch_sim::run_seed(seed)?;
        if again != outcome {
            return Err(Failure {
                seed: Some(seed),
                violation: clutch_sim::Violation {
                    check: "determinism",
                    checker: "campaign",
                    at: outcome.simulated,
                    message: format!(
                        "two runs differ: fingerprints {:016x} and {:016x}",
                        outcome.fingerprint, again.fingerprint
                    ),
                },
            });
        }
    }
    Ok(outcome)
}

fn progress(totals: &Totals, count: u64, elapsed: Duration) {
    let done = totals.done.load(Ordering::Relaxed);
    let events = totals.events.load(Ordering::Relaxed);
    let failed = totals.failures.lock().expect("lock").len();
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "  {done}/{count} seeds, {failed} failed, {:.0} seeds/s, {:.0} events/s",
        done as f64 / secs,
        events as f64 / secs
    );
}
