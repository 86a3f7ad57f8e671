//! gs-clutch's `log` option, on top of `tracing`: off, the default subscriber, or a user
//! function that receives every log line.
//!
//! # Logging never hurts the master
//!
//! The subscribers clutch installs write to stderr through [`StderrSink`], which never
//! blocks and never fails: a master whose log reader is slow, stopped or gone must go on
//! supervising. Each event is one `write(2)` of its whole line(s); a line that cannot be
//! written at once (the pipe is full, the reader went away: `EAGAIN`, `EPIPE`) is dropped
//! and counted, and the next line that can be written is preceded by one line saying how
//! many were dropped. Workers share the master's stderr, so its blocking mode is not ours
//! to change: the sink writes through a descriptor of its own (see [`Sink::open`]).
//!
//! The workers' lines (`--worker-output prefix|json`, `engine/output.rs`) go through the
//! same stderr sink, and through a second one of the same kind on stdout; what they
//! cannot write is dropped and counted by their caller, not announced in the stream.

use std::io::{self, IsTerminal};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tracing_subscriber::fmt::MakeWriter;

/// Where clutch's log lines go.
///
/// Non-exhaustive: more destinations (journald, syslog) may come; build one, do not
/// match it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Log {
    /// Install nothing: lines go to whatever `tracing` subscriber the application set up
    /// (none: nowhere). gs-clutch's `log: false`.
    #[default]
    Off,
    /// Install a plain subscriber writing to stderr, honouring `RUST_LOG` (default
    /// `info`). gs-clutch's `log: true`.
    Stderr,
    /// Install a subscriber writing one JSON object per line to stderr (every event carries
    /// an `event` field naming it), for machines.
    Json,
    /// Install a subscriber that hands every formatted line to this function.
    /// gs-clutch's `log: function(str) {…}`.
    Func(Arc<dyn Fn(&str) + Send + Sync>),
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "Off",
            Self::Stderr => "Stderr",
            Self::Json => "Json",
            Self::Func(_) => "Func(..)",
        })
    }
}

impl Log {
    /// Installs the subscriber this option asks for, unless the application already
    /// installed one (then that one wins, silently: it is the application's choice).
    pub fn install(&self) {
        let filter = || {
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        };
        let _ = match self {
            Self::Off => return,
            Self::Stderr => tracing_subscriber::fmt()
                .with_timer(Timestamp)
                .with_env_filter(filter())
                .with_ansi(io::stderr().is_terminal())
                .with_writer(StderrSink::new(Format::Text))
                .try_init(),
            Self::Json => tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_timer(Timestamp)
                .with_env_filter(filter())
                .with_writer(StderrSink::new(Format::Json))
                .try_init(),
            Self::Func(func) => tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .without_time()
                .with_writer(LineSink(func.clone()))
                .try_init(),
        };
    }
}

/// A `MakeWriter` whose writers buffer one formatted event and pass it on as a line.
#[derive(Clone)]
struct LineSink(Arc<dyn Fn(&str) + Send + Sync>);

struct LineWriter {
    sink: Arc<dyn Fn(&str) + Send + Sync>,
    buffer: Vec<u8>,
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sink: self.0.clone(),
            buffer: Vec::with_capacity(128),
        }
    }
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        for line in text.lines().filter(|l| !l.is_empty()) {
            (self.sink)(line);
        }
    }
}

/// The line format, for the "lines dropped" line the sink writes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// A `MakeWriter` for stderr that never blocks and never fails (see the module docs).
#[derive(Clone, Copy)]
struct StderrSink {
    format: Format,
}

impl StderrSink {
    fn new(format: Format) -> Self {
        Self { format }
    }
}

/// The process's one stderr sink, shared by every thread that logs.
fn shared() -> &'static Mutex<Sink> {
    static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(Sink::open(rustix::stdio::stderr())))
}

/// The same for stdout, which only the workers' output (`--worker-output prefix|json`)
/// writes to.
fn shared_stdout() -> &'static Mutex<Sink> {
    static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(Sink::open_as(rustix::stdio::stdout(), 1)))
}

/// Opens the sinks of stdout and stderr now, before the first worker's pipes exist: a
/// master started with fd 1 or 2 closed must not later take one of those pipes (which
/// may get the lowest free number) for its own stdout or stderr.
pub(crate) fn open_output_sinks() {
    let _ = shared_stdout();
    let _ = shared();
}

/// Writes `bytes` (whole lines of the workers' output) to the master's stdout, or to its
/// stderr, through the same kind of sink as the log: never blocking, never failing.
/// Returns `false` when they could not be written at all (full or closed); counting
/// those is the caller's business (the "log lines dropped" notice is for the log's own
/// lines).
pub(crate) fn write_output(to_stdout: bool, bytes: &[u8]) -> bool {
    let sink = if to_stdout { shared_stdout() } else { shared() };
    let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    sink.write_whole(bytes)
}

impl<'a> MakeWriter<'a> for StderrSink {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            format: self.format,
            buffer: Vec::with_capacity(256),
        }
    }
}

/// Buffers one formatted event and hands it to the sink whole, when dropped.
struct EventWriter {
    format: Format,
    buffer: Vec<u8>,
}

impl io::Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        // A panic elsewhere while logging must not make logging panic too.
        let mut sink = shared()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sink.write_line(self.format, &self.buffer);
    }
}

/// How the sink reaches stderr without blocking.
#[derive(Debug)]
enum Target {
    /// A descriptor of our own, opened `O_NONBLOCK` on the same pipe or terminal (a new
    /// open file description, so the workers' fd 2 stays blocking).
    Reopened(OwnedFd),
    /// A socket (journald's stream, say): `send(MSG_DONTWAIT)` on the fd itself.
    Socket,
    /// A regular file or a device that does not block: plain `write` on the fd.
    Plain,
    /// Nothing to write to (fd 2 closed, or a pipe whose reader was already gone).
    Closed,
}

/// A non-blocking writer of whole lines to stderr that counts what it had to drop.
#[derive(Debug)]
pub(crate) struct Sink {
    target: Target,
    /// The descriptor written to for [`Target::Socket`] and [`Target::Plain`]: 2
    /// (stderr) or 1 (stdout).
    raw: i32,
    /// Lines dropped since the last one written.
    dropped: u64,
    /// Lines dropped in all.
    dropped_total: u64,
}

/// The most a single event may hold back of a partial write (a line longer than the
/// pipe's atomic size, `PIPE_BUF`): the rest of it is written before the next line.
const MAX_PENDING: usize = 64 * 1024;

impl Sink {
    /// A sink writing to `fd` (stderr): a pipe or terminal is reopened through
    /// `/proc/self/fd` with `O_NONBLOCK`; a socket is written with `MSG_DONTWAIT`.
    pub(crate) fn open(fd: BorrowedFd<'_>) -> Self {
        Self::open_as(fd, 2)
    }

    /// [`Sink::open`] for `fd`, which is the process's descriptor number `raw` (1 or 2).
    fn open_as(fd: BorrowedFd<'_>, raw: i32) -> Self {
        use rustix::fs::{FileType, Mode, OFlags};
        let target = match rustix::fs::fstat(fd) {
            Err(_) => Target::Closed,
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Socket => Target::Socket,
                FileType::Fifo | FileType::CharacterDevice => {
                    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                    let flags =
                        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
                    match rustix::fs::open(path.as_str(), flags, Mode::empty()) {
                        Ok(own) => Target::Reopened(own),
                        // A FIFO without a reader (ENXIO): every write would fail.
                        Err(rustix::io::Errno::NXIO) => Target::Closed,
                        // No /proc: the file description is shared with the workers, so
                        // its mode stays as it is.
                        Err(_) => Target::Plain,
                    }
                }
                _ => Target::Plain,
            },
        };
        Self {
            target,
            raw,
            dropped: 0,
            dropped_total: 0,
        }
    }

    /// Writes one event's line(s) whole, or drops and counts them.
    fn write_line(&mut self, format: Format, line: &[u8]) {
        if self.dropped > 0 {
            let notice = dropped_line(format, self.dropped, SystemTime::now());
            if !self.write_whole(notice.as_bytes()) {
                self.drop_one();
                return;
            }
            self.dropped = 0;
        }
        if !self.write_whole(line) {
            self.drop_one();
        }
    }

    fn drop_one(&mut self) {
        self.dropped += 1;
        self.dropped_total += 1;
    }

    /// Writes all of `bytes`, or nothing at all when not one byte can be written now.
    /// (Of a line longer than `PIPE_BUF` a prefix may get through; the rest is then
    /// retried a bounded number of times so that the next line starts on its own.)
    fn write_whole(&mut self, bytes: &[u8]) -> bool {
        let mut written = 0;
        let mut attempts = 0;
        while written < bytes.len() {
            match self.write_some(&bytes[written..]) {
                Ok(n) => written += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) if written == 0 => return false,
                Err(_) => {
                    // Torn line: end it so the next one is readable.
                    attempts += 1;
                    if attempts > 3 || bytes.len() > MAX_PENDING {
                        let _ = self.write_some(b"\n");
                        return true;
                    }
                    std::thread::yield_now();
                }
            }
        }
        true
    }

    fn write_some(&self, bytes: &[u8]) -> rustix::io::Result<usize> {
        use rustix::net::SendFlags;
        match &self.target {
            Target::Reopened(fd) => rustix::io::write(fd, bytes),
            Target::Socket => rustix::net::send(
                self.std_fd(),
                bytes,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ),
            Target::Plain => rustix::io::write(self.std_fd(), bytes),
            Target::Closed => Err(rustix::io::Errno::BADF),
        }
    }

    /// fd 1 or fd 2, which stay open for the life of the process.
    fn std_fd(&self) -> BorrowedFd<'static> {
        if self.raw == 1 {
            rustix::stdio::stdout()
        } else {
            rustix::stdio::stderr()
        }
    }

    #[cfg(test)]
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.target {
            Target::Reopened(fd) => Some(std::os::fd::AsFd::as_fd(fd)),
            _ => None,
        }
    }
}

/// Writes `line` (a newline is added) to stderr through the same sink as the log: never
/// blocking, never failing. For the few lines a master says outside its log (its exit
/// reason): a full or closed stderr drops the line, as it would a log line.
pub fn stderr_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let mut sink = shared()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    sink.write_line(Format::Text, text.as_bytes());
}

/// Lines the stderr sink has dropped since the process started (full or closed stderr).
pub(crate) fn dropped_lines() -> u64 {
    shared()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .dropped_total
}

/// The line that says `count` lines were dropped, in the subscriber's format.
fn dropped_line(format: Format, count: u64, now: SystemTime) -> String {
    let timestamp = rfc3339(now);
    let message = "log lines dropped: stderr was full or closed";
    match format {
        Format::Text => format!("{timestamp}  WARN clutch: {message} dropped={count}\n"),
        Format::Json => format!(
            "{{\"timestamp\":\"{timestamp}\",\"level\":\"WARN\",\"event\":\"log_lines_dropped\",\"dropped\":{count},\"message\":\"{message}\",\"target\":\"clutch\"}}\n"
        ),
    }
}

/// `2026-12-01T20:21:58.123456Z`, as tracing-subscriber's default timer writes it.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let mut text = String::with_capacity(27);
    let _ = write_rfc3339(at, &mut text);
    text
}

/// [`rfc3339`] into `out`. The date and time of day are formatted once a second (per
/// thread) and kept, so a line costs only its microseconds: on a mass respawn, three
/// lines per worker, the timer was a fifth of the logging's CPU.
fn write_rfc3339(at: SystemTime, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|second| match second.try_borrow_mut() {
        Ok(mut second) => {
            if second.0 != secs {
                *second = (secs, date_and_time(secs));
            }
            out.write_str(&second.1)
        }
        // (Only if formatting a time could log: it cannot.)
        Err(_) => out.write_str(&date_and_time(secs)),
    })?;
    let mut tail = *b".000000Z";
    let mut micros = since.subsec_micros();
    for digit in tail[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.write_str(std::str::from_utf8(&tail).unwrap_or(".000000Z"))
}

/// `2026-12-01T20:21:58` for `secs` since the epoch (UTC).
fn date_and_time(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
    )
}

/// The subscribers' timer: tracing-subscriber's `SystemTime`, byte for byte, through
/// [`write_rfc3339`].
#[derive(Clone, Copy, Debug, Default)]
struct Timestamp;

impl tracing_subscriber::fmt::time::FormatTime for Timestamp {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write_rfc3339(SystemTime::now(), w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    /// A pipe whose write end is the sink's "stderr".
    fn pipe_sink() -> (Sink, std::fs::File, OwnedFd) {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let sink = Sink::open(write.as_fd());
        assert!(sink.fd().is_some(), "a pipe is reopened non-blocking");
        (sink, std::fs::File::from(read), write)
    }

    #[test]
    fn a_full_pipe_drops_lines_instead_of_blocking_and_says_so_once_it_drains() {
        let (mut sink, mut reader, _write) = pipe_sink();
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // A pipe holds 64 KiB: 200 KiB of lines cannot all fit, and nobody reads.
        for _ in 0..200 {
            sink.write_line(Format::Text, &line);
        }
        assert!(sink.dropped > 0, "some lines were dropped");
        let dropped = sink.dropped;
        // Drain, then one more line: the notice comes first, then the line.
        let mut drained = vec![0u8; 1 << 20];
        let n = reader.read(&mut drained).unwrap();
        assert_eq!(n % 1024, 0, "only whole lines were written");
        rustix::io::ioctl_fionbio(&reader, true).unwrap();
        while reader.read(&mut drained).is_ok_and(|n| n > 0) {}
        sink.write_line(Format::Text, b"after\n");
        let n = reader.read(&mut drained).unwrap();
        let text = std::str::from_utf8(&drained[..n]).unwrap();
        let mut lines = text.lines();
        let notice = lines.next().unwrap();
        assert!(
            notice.ends_with(&format!(
                "WARN clutch: log lines dropped: stderr was full or closed dropped={dropped}"
            )),
            "{notice}"
        );
        assert_eq!(lines.next(), Some("after"));
        assert_eq!(sink.dropped, 0);
        assert_eq!(sink.dropped_total, dropped);
    }

    #[test]
    fn a_closed_pipe_is_survived() {
        let (mut sink, reader, _write) = pipe_sink();
        drop(reader);
        for _ in 0..3 {
            sink.write_line(Format::Json, b"{}\n");
        }
        assert_eq!(sink.dropped_total, 3);
    }

    #[test]
    fn the_workers_descriptor_keeps_blocking() {
        let (_sink, _reader, write) = pipe_sink();
        let flags = rustix::fs::fcntl_getfl(&write).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        let _ = write.as_raw_fd();
    }

    /// The kept date and time of day give what formatting each time would, across second,
    /// day and year boundaries, and the same as tracing-subscriber's own timer.
    #[test]
    fn the_timestamp_is_tracing_subscribers_to_the_microsecond() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::FormatTime;
        let epoch = SystemTime::UNIX_EPOCH;
        for (secs, nanos, text) in [
            (1_796_156_518, 123_456_789, "2026-12-01T20:21:58.123456Z"),
            (1_796_156_518, 999_999_999, "2026-12-01T20:21:58.999999Z"),
            (1_796_156_519, 0, "2026-12-01T20:21:59.000000Z"),
            (1_798_761_599, 7_000, "2026-12-31T23:59:59.000007Z"),
            (1_798_761_600, 1_000, "2027-01-01T00:00:00.000001Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
        ] {
            let at = epoch + Duration::new(secs, nanos);
            assert_eq!(rfc3339(at), text);
            assert_eq!(rfc3339(at), text, "again, from the kept second");
        }
        // Against tracing-subscriber's timer: the same shape, and the same second unless
        // one fell between the two calls.
        let theirs_and_ours = || {
            let (mut theirs, mut ours) = (String::new(), String::new());
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            Timestamp.format_time(&mut Writer::new(&mut ours)).unwrap();
            (theirs, ours)
        };
        let same_second = (0..10).any(|_| {
            let (theirs, ours) = theirs_and_ours();
            assert_eq!(theirs.len(), ours.len(), "{theirs} {ours}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            theirs[..19] == ours[..19]
        });
        assert!(same_second);
    }

    #[test]
    fn the_json_notice_is_json_and_the_timestamp_is_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_156_518_123_456);
        assert_eq!(rfc3339(at), "2026-12-01T20:21:58.123456Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let line = dropped_line(Format::Json, 7, at);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["dropped"], 7);
        assert_eq!(value["event"], "log_lines_dropped");
        assert_eq!(value["timestamp"], "2026-12-01T20:21:58.123456Z");
    }

    #[test]
    fn the_function_receives_each_formatted_line_once_whole() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            LineSink(Arc::new(move |line: &str| {
                lines.lock().unwrap().push(line.to_owned())
            }))
        };
        // A formatter writes one event in pieces; the function sees it as one line.
        {
            let mut writer = sink.make_writer();
            writer.write_all(b" INFO clutch: worker ").unwrap();
            writer.write_all(b"died unexpectedly worker=3\n").unwrap();
        }
        {
            let mut writer = sink.make_writer();
            writer.write_all(b"two\nlines\n\n").unwrap();
        }
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            [
                " INFO clutch: worker died unexpectedly worker=3",
                "two",
                "lines"
            ]
        );
    }
}
