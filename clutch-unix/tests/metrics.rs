//! `clutch run --metrics` end to end: scrapes of a real master read by the reference
//! parsers (Python's `prometheus_client`, both the text format's and OpenMetrics'),
//! whose values follow what the cluster lives through (a worker killed, a reload);
//! the HTTP edge (404, 405, 400, an oversized head, a client that never sends, too many
//! at once); a port in use refused before any worker starts; a unix socket.
//!
//! Without `prometheus_client` the parsing tests are skipped with a printed reason,
//! except under `CI=true`, where they fail (`.ci/run` installs it).
//!
//! Loopback with OS-chosen ports, sockets in temp dirs; every wait is on a condition
//! with a generous deadline; every process started is killed by pid.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clutch_unix::control::Request;
use common::PATIENCE;
use serde_json::Value;
use support::{Master, CLUTCH};

/// Two workers that count as ready 100 ms after they start, with a short probation so
/// that a reload is quick, and metrics on a port the OS picks.
const ARGS: [&str; 11] = [
    "-w",
    "2",
    "--ready",
    "100ms",
    "--min-uptime",
    "200ms",
    "--metrics",
    "127.0.0.1:0",
    "--",
    "/bin/sleep",
    "1000",
];

fn start() -> Master {
    let mut master = Master::start(&ARGS, Stdio::null(), &[]);
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    master
}

/// Where the master serves its metrics, as `status` says.
fn metrics_addr(master: &mut Master) -> String {
    let status = master.status();
    status["metrics"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics address in {status}"))
        .to_owned()
}

/// One HTTP exchange: `request` as it is, the whole answer until the server closes.
fn exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8(answer).unwrap()
}

/// `GET /metrics`, with `accept`: (status line, content type, body).
fn scrape(addr: &str, accept: &str) -> (String, String, String) {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    let answer = exchange(addr, request.as_bytes());
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "{head}");
    (status, content_type, body.to_owned())
}

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

/// Reads metrics text with the reference parser of `format` (`text` or
/// `openmetrics`) and prints every sample as JSON: `[family, type, name, labels,
/// value]`. A text the parser refuses is an error (non-zero exit, its message).
const PARSE: &str = r#"
import json, sys
fmt = sys.argv[1]
if fmt == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.append([family.name, family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// Whether Python's `prometheus_client` can be imported; if not, fails under CI and
/// returns false (skip) elsewhere.
fn have_parser(test: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: python3 cannot import prometheus_client (.ci/run installs it)"
        );
        common::skipped(&format!(
            "SKIPPED {test}: python3 cannot import prometheus_client \
             (pip install prometheus_client)"
        ));
    }
    found
}

/// A sample as the parser read it.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: Value,
    value: f64,
}

/// `text` through the reference parser of `format`.
fn parse(text: &str, format: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser refused:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|row| Sample {
            family: row[0].as_str().unwrap().to_owned(),
            kind: row[1].as_str().unwrap().to_owned(),
            name: row[2].as_str().unwrap().to_owned(),
            labels: row[3].clone(),
            value: row[4].as_f64().unwrap(),
        })
        .collect()
}

/// Both formats, each read by its parser: the same samples, by name and labels.
fn scrape_both(addr: &str) -> Vec<Sample> {
    let (status, content_type, text) = scrape(addr, "text/plain;version=0.0.4;q=0.9,*/*;q=0.1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (status, content_type, om) = scrape(addr, OPENMETRICS);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    let samples = parse(&text, "text");
    let open = parse(&om, "openmetrics");
    let names = |samples: &[Sample]| -> BTreeSet<String> {
        samples
            .iter()
            // Per-worker figures and times move between the two scrapes.
            .filter(|s| !s.name.starts_with("clutch_worker_") && !s.name.starts_with("process_"))
            .map(|s| format!("{}{}", s.name, s.labels))
            .collect()
    };
    assert_eq!(
        names(&samples),
        names(&open),
        "the two formats say the same"
    );
    // OpenMetrics names a counter's family without its `_total`.
    let family = open
        .iter()
        .find(|s| s.name == "clutch_rollouts_started_total")
        .expect("rollouts started");
    assert_eq!(
        (&*family.family, &*family.kind),
        ("clutch_rollouts_started", "counter")
    );
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels[*k] == *v))
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {samples:#?}"))
        .value
}

/// The per-worker series of `name`: (id, generation) → value.
fn per_worker(samples: &[Sample], name: &str) -> Vec<(u64, u64, f64)> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let number = |k: &str| s.labels[k].as_str().unwrap().parse::<u64>().unwrap();
            (number("id"), number("generation"), s.value)
        })
        .collect()
}

#[test]
fn scrapes_parse_and_follow_a_crash_and_a_reload() {
    if !have_parser("scrapes_parse_and_follow_a_crash_and_a_reload") {
        return;
    }
    let mut master = start();
    let addr = metrics_addr(&mut master);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let samples = scrape_both(&addr);
    assert_eq!(
        value(&samples, "clutch_workers", &[("state", "ready")]),
        2.0
    );
    assert_eq!(value(&samples, "clutch_workers_target", &[]), 2.0);
    assert_eq!(value(&samples, "clutch_workers_ready", &[]), 2.0);
    assert_eq!(
        value(&samples, "clutch_phase", &[("phase", "running")]),
        1.0
    );
    assert_eq!(value(&samples, "clutch_generation", &[]), 1.0);
    assert_eq!(
        value(&samples, "clutch_worker_boot_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "clutch_worker_boot_seconds_bucket",
            &[("le", "+Inf")]
        ),
        2.0
    );
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    value(&samples, "process_cpu_seconds_total", &[]);
    let memory = per_worker(&samples, "clutch_worker_memory_bytes");
    let cpu = per_worker(&samples, "clutch_worker_cpu_seconds_total");
    let uptime = per_worker(&samples, "clutch_worker_uptime_seconds");
    assert_eq!(memory.len(), 2, "{memory:?}");
    assert_eq!(cpu.len(), 2, "{cpu:?}");
    assert!(
        memory.iter().all(|&(_, g, bytes)| g == 1 && bytes > 0.0),
        "{memory:?}"
    );
    assert!(
        cpu.iter().all(|&(_, _, s)| (0.0..60.0).contains(&s)),
        "{cpu:?}"
    );
    assert!(uptime.iter().all(|&(_, _, s)| s > 0.0), "{uptime:?}");
    // `status` shows the same figures under the names `clutch top` reads.
    let status = master.status();
    for worker in status["workers"].as_array().unwrap() {
        assert!(worker["memory_bytes"].as_u64().unwrap() > 0, "{worker}");
        assert!(worker["cpu_seconds"].as_f64().is_some(), "{worker}");
    }
    let before: BTreeSet<u64> = uptime.iter().map(|w| w.0).collect();

    // A ready worker killed: a crash, and a fresh worker in its slot.
    let victim = master.worker_pids()[0];
    master.kill_worker_and_wait(victim);
    master.wait_until("the replacement is ready", |m| m.ready() == 2);
    let samples = scrape_both(&addr);
    assert_eq!(
        value(
            &samples,
            "clutch_worker_restarts_total",
            &[("cause", "crash")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "clutch_worker_restarts_total",
            &[("cause", "boot_failure")]
        ),
        0.0
    );
    assert_eq!(value(&samples, "clutch_worker_spawns_total", &[]), 3.0);
    let after: BTreeSet<u64> = per_worker(&samples, "clutch_worker_uptime_seconds")
        .iter()
        .map(|w| w.0)
        .collect();
    assert_eq!(after.len(), 2, "{after:?}");
    let fresh: Vec<&u64> = after.difference(&before).collect();
    assert_eq!(fresh.len(), 1, "one new worker: {before:?} → {after:?}");
    assert!(*fresh[0] > *before.iter().max().unwrap(), "a fresh id");

    // A reload: the rollout counters move, every worker is of generation 2.
    let answer = master.ask(Request::Reload).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let mut samples = Vec::new();
    master.wait_until("only generation 2 is left", |_| {
        samples = scrape_both(&addr);
        let workers = per_worker(&samples, "clutch_worker_uptime_seconds");
        workers.len() == 2 && workers.iter().all(|w| w.1 == 2)
    });
    assert_eq!(value(&samples, "clutch_rollouts_started_total", &[]), 1.0);
    assert_eq!(value(&samples, "clutch_rollouts_finished_total", &[]), 1.0);
    assert_eq!(value(&samples, "clutch_rollouts_failed_total", &[]), 0.0);
    assert_eq!(value(&samples, "clutch_generation", &[]), 2.0);
    assert_eq!(
        value(&samples, "clutch_worker_boot_seconds_count", &[]),
        5.0
    );
    assert_eq!(master.stop(), 0);
}

/// Through the control socket (the request path a `MasterHandle` takes): the same text,
/// in either format.
#[test]
fn the_control_socket_answers_metrics_in_either_format() {
    let mut master = start();
    for (format, last) in [
        (
            clutch_unix::MetricsFormat::Prometheus,
            "process_resident_memory_bytes",
        ),
        (clutch_unix::MetricsFormat::OpenMetrics, "# EOF"),
    ] {
        let answer = master.ask(Request::Metrics { format }).unwrap();
        let text = answer["metrics"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        assert!(text.contains("\nclutch_workers_ready 2\n"), "{text}");
        let end = text.lines().last().unwrap();
        assert!(end.starts_with(last), "{format:?} ends with {end}");
    }
    assert_eq!(master.stop(), 0);
}

#[test]
fn anything_but_a_scrape_gets_its_status_and_no_client_stalls_the_master() {
    let mut master = start();
    let addr = metrics_addr(&mut master);
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "404 Not Found"),
        (
            b"DELETE /metrics HTTP/1.1\r\n\r\n",
            "405 Method Not Allowed",
        ),
        (b"\x16\x03\x01 garbage\r\n\r\n", "400 Bad Request"),
        (b"GET /metrics SPDY/3\r\n\r\n", "400 Bad Request"),
    ] {
        let answer = exchange(&addr, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    }
    let answer = exchange(&addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
    assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
    // Half a head, then the client's end: 400, still read by the client.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.set_read_timeout(Some(PATIENCE)).unwrap();
    half.write_all(b"GET /metr").unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    half.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // A head without a body.
    let answer = exchange(&addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && body.is_empty(),
        "{answer}"
    );
    // An oversized head (32 KiB of one header, never ended): 431, and the rest of what
    // the client sends is read, not reset.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(32 * 1024, b'a');
    let answer = exchange(&addr, &big);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );

    // A client that connects and never sends: the master answers meanwhile, and drops
    // it at the deadline.
    let mut silent = TcpStream::connect(&addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let connected = Instant::now();
    assert_eq!(master.ask(Request::Status).unwrap()["ok"], true);
    let (status, ..) = scrape(&addr, "*/*");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Answered while the silent one is still held open (not after it was dropped).
    let mut nothing = [0u8; 16];
    silent.set_nonblocking(true).unwrap();
    let open = silent.read(&mut nothing).map_err(|e| e.kind());
    assert_eq!(open, Err(std::io::ErrorKind::WouldBlock), "still open");
    silent.set_nonblocking(false).unwrap();
    assert_eq!(
        silent.read(&mut nothing).unwrap(),
        0,
        "closed, with no answer"
    );
    let dropped_after = connected.elapsed();
    assert!(
        dropped_after >= Duration::from_secs(4) && dropped_after < PATIENCE,
        "dropped at the 5 s deadline, not {dropped_after:?}"
    );

    // Sixteen connections at once are served; the seventeenth is refused with a 503
    // (read before it sends: a request that crosses the close could be reset with it).
    let held: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let answer = exchange(&addr, b"");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    drop(held);
    master.wait_until("scrapes are served again", |_| {
        scrape(&addr, "*/*").0 == "HTTP/1.1 200 OK"
    });
    assert_eq!(master.stop(), 0);
}

#[test]
fn a_port_in_use_or_a_bad_address_fails_before_any_worker_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (metrics, code, says) in [
        (
            &*addr,
            1,
            format!("creating the metrics socket: cannot listen on {addr}"),
        ),
        (
            "nonsense",
            2,
            "invalid value 'nonsense' for '--metrics <ADDR>'".to_owned(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(CLUTCH)
            .args(["run", "--control"])
            .arg(dir.path().join("ctl.sock"))
            .args(["--metrics", metrics, "--", "/bin/sleep", "1000"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(&says), "{says:?} in:\n{stderr}");
        assert!(!stderr.contains("Worker started"), "{stderr}");
    }
    drop(taken);
}

#[test]
fn metrics_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("metrics.sock");
    let metrics = format!("unix:{}", socket.display());
    let mut args = ARGS.to_vec();
    args[7] = &metrics;
    let mut master = Master::start(&args, Stdio::null(), &[]);
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    assert_eq!(metrics_addr(&mut master), metrics);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\nclutch_workers_ready 2\n"), "{answer}");
    assert_eq!(master.stop(), 0);
    assert!(!socket.exists(), "the socket file goes with the master");
}

/// The master's voluntary context switches so far (its every thread): each one a
/// return from a blocking wait, that is a wakeup (as `tests/recycling.rs` counts them).
fn wakeups(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Serving metrics costs an idle master nothing: no timer, no sampling. After a scrape
/// (its connection closed by the client, so no deadline is left), 2 s without a word to
/// the master: not one wakeup.
#[test]
fn an_idle_master_with_metrics_on_makes_no_wakeups() {
    let mut master = start();
    master.wait_until("both workers proven", |m| {
        let status = m.status();
        let workers = status["workers"].as_array().cloned().unwrap_or_default();
        workers.len() == 2 && workers.iter().all(|w| w["proven"] == true)
    });
    let addr = metrics_addr(&mut master);
    assert_eq!(scrape(&addr, "*/*").0, "HTTP/1.1 200 OK");
    // Settled: the scrape's close and the status answers have been served (a second,
    // for a loaded machine).
    std::thread::sleep(Duration::from_secs(1));
    let pid = master.child.id();
    let before = wakeups(pid);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wakeups(pid) - before, 0, "wakeups of an idle master");
    assert_eq!(master.stop(), 0);
}

/// SIGKILLs the new master an upgrade started, if the test ends without stopping it.
struct Successor {
    pid: u32,
    marker: String,
}

impl Drop for Successor {
    fn drop(&mut self) {
        common::kill_if_ours(self.pid, &self.marker);
    }
}

/// An upgrade hands the metrics socket over with the control socket: the new master
/// serves the same address (even one the OS chose), with no new bind to fail on.
#[test]
fn an_upgrade_hands_the_metrics_socket_to_the_new_master() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let value = format!("{}-{nanos}", std::process::id());
    let marker = format!("CLUTCH_METRICS_TEST={value}");
    let mut master = Master::start(&ARGS, Stdio::null(), &[("CLUTCH_METRICS_TEST", &value)]);
    master.wait_until("both workers are ready", |m| m.ready() == 2);
    let addr = metrics_addr(&mut master);
    let answer = master.ask(Request::Upgrade).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let pid = answer["pid"].as_u64().unwrap() as u32;
    let _successor = Successor {
        pid,
        marker: marker.clone(),
    };
    // The old master exits once its workers are gone; from then on only the new one can
    // answer on the address.
    assert_eq!(master.wait_exit().code(), Some(0));
    let status = master.status();
    assert_eq!(status["pid"], pid, "{status}");
    assert_eq!(status["metrics"], addr, "{status}");
    master.wait_until("the new master's workers are ready", |m| m.ready() == 2);
    let (line, _, text) = scrape(&addr, "*/*");
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert!(text.contains("\nclutch_workers_ready 2\n"), "{text}");
    let answer = master.ask(Request::Stop).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let deadline = Instant::now() + PATIENCE;
    while common::is_ours(pid, &marker) {
        assert!(Instant::now() < deadline, "the new master did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}
