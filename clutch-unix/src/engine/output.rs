//! The workers' output (`--worker-output`): their stdout and stderr read by the master
//! through one pipe per stream per worker, each line attributed to its worker and
//! written to the master's own stdout or stderr.
//!
//! # Forms
//!
//! | mode | a line `hello` of worker 7 (slot 2, pid 4242, generation 1) on its stdout |
//! |---|---|
//! | [`WorkerOutput::Inherit`] | no pipes: the workers write to the master's stdout and stderr themselves |
//! | [`WorkerOutput::Prefix`] | `[2 7 4242] hello` (`[slot id pid] `); a cut line: `[2 7 4242 cut] …` |
//! | [`WorkerOutput::Json`] | `{"timestamp":"…","level":"INFO","message":"hello","event":"worker_output","worker":7,"slot":2,"pid":4242,"generation":1,"stream":"stdout","target":"worker"}`; a cut line has `"cut":true` before `target` |
//!
//! A worker's stdout lines go to the master's stdout, its stderr lines to the master's
//! stderr, in both forms (`2>&1` makes one stream of them).
//!
//! # Bounded everything
//!
//! - A turn reads at most [`READ_PER_TURN`] bytes from each pipe; a pipe that may hold
//!   more waits in a backlog, and the next turn polls without waiting.
//! - A line longer than [`MAX_LINE`] bytes is cut: its first [`MAX_LINE`] bytes are
//!   written, marked as cut, and the rest of it, up to its newline, is discarded. So a
//!   worker's partial line never holds more than [`MAX_LINE`] bytes of the master's memory.
//! - Lines are written through `log.rs`'s non-blocking sinks, a batch of whole lines of up
//!   to `PIPE_BUF` bytes per `write(2)`; what cannot be written at once (the master's
//!   stdout or stderr is full or closed) is dropped and counted (`worker_lines_dropped` in
//!   `status`), with one warning in the log at most every [`DROPS_LOG_EVERY`].
//!
//! # The end of a stream
//!
//! The worker's descendants inherit its pipes: a stream ends at EOF (every writer gone),
//! not at the worker's exit. Once the worker's tree is gone (the driver's `gone`), what is
//! buffered is read (at most [`AFTER_GONE`] bytes more), the partial last line flushed,
//! and the read end closed, EOF or not: a descriptor that some process outside the tree
//! still holds (passed over a socket, say) never keeps the master's open.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use clutch_proto::WorkerId;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// What becomes of the workers' stdout and stderr.
///
/// Non-exhaustive: more forms may come; build one, do not match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WorkerOutput {
    /// The workers inherit the master's stdout and stderr (no pipes): their lines land
    /// as they write them. The default.
    #[default]
    Inherit,
    /// Each line prefixed with `[slot id pid] `: `[2 7 4242] hello` (a line cut at 16 KiB:
    /// `[2 7 4242 cut] …`). Stdout lines to the master's stdout, stderr lines to its
    /// stderr.
    Prefix,
    /// Each line as one JSON object in the schema of the master's `--log-format json`
    /// lines: `timestamp`, `level` (`INFO`), `message` (the line), `event`
    /// (`worker_output`), `worker`, `slot`, `pid`, `generation`, `stream` (`stdout` or
    /// `stderr`), `cut` (only when the line was cut), `target` (`worker`). Each to the
    /// master's stream of the same name, as with `Prefix`.
    Json,
}

impl WorkerOutput {
    /// The mode's name, as the command line spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Inherit => "inherit",
            Self::Prefix => "prefix",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for WorkerOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WorkerOutput {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "inherit" => Ok(Self::Inherit),
            "prefix" => Ok(Self::Prefix),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "{other:?} is not a worker output mode (inherit, prefix or json)"
            )),
        }
    }
}

/// The longest line written whole; a longer one is cut to this many bytes.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// Bytes read from one pipe in one turn.
pub(crate) const READ_PER_TURN: usize = 64 * 1024;
/// Bytes read from a pipe after its worker's tree is gone, before it is closed anyway.
pub(crate) const AFTER_GONE: usize = 1024 * 1024;
/// One warning about dropped lines at most this often.
pub(crate) const DROPS_LOG_EVERY: Duration = Duration::from_secs(10);
/// The most bytes written at once: a pipe's atomic write (`PIPE_BUF`), so a batch is
/// written whole or not at all.
const BATCH: usize = 4096;

/// A worker's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Whose lines these are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who {
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) pid: u32,
    pub(crate) generation: u64,
}

/// Splits a byte stream into lines of at most `max` ([`MAX_LINE`]) bytes (pure).
#[derive(Debug)]
pub(crate) struct Lines {
    /// The line so far (never more than `max` bytes).
    partial: Vec<u8>,
    /// The current line was cut: discard up to its newline.
    discarding: bool,
    max: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl Lines {
    /// Lines cut at `max` bytes (at least 1).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            discarding: false,
            max: max.max(1),
        }
    }

    /// Feeds `data`; `emit(line, cut)` gets every complete line (without its newline).
    pub(crate) fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (piece, rest) = match newline {
                Some(at) => (&data[..at], Some(&data[at + 1..])),
                None => (data, None),
            };
            if self.discarding {
                // The rest of a cut line.
                self.discarding = rest.is_none();
            } else if self.partial.len() + piece.len() > self.max {
                let room = self.max - self.partial.len();
                self.partial.extend_from_slice(&piece[..room]);
                emit(&self.partial, true);
                self.clear();
                self.discarding = rest.is_none();
            } else if rest.is_some() {
                if self.partial.is_empty() {
                    emit(piece, false);
                } else {
                    self.partial.extend_from_slice(piece);
                    emit(&self.partial, false);
                    self.clear();
                }
            } else {
                self.partial.extend_from_slice(piece);
            }
            data = rest.unwrap_or_default();
        }
    }

    /// The stream ended: a partial last line is a line.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, false);
        }
        self.clear();
        self.discarding = false;
    }

    /// Empties the partial line, and gives back the memory a long one took (a pipe's
    /// buffer stays at most a few KiB between long lines).
    fn clear(&mut self) {
        self.partial.clear();
        self.partial.shrink_to(4096);
    }
}

/// Formats one line of `who`'s `stream` in `mode` into `out` (with its newline).
fn format_line(
    mode: WorkerOutput,
    who: &Who,
    stream: Stream,
    line: &[u8],
    cut: bool,
    now: SystemTime,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let Who {
        id,
        slot,
        pid,
        generation,
    } = *who;
    match mode {
        WorkerOutput::Json => {
            let message = String::from_utf8_lossy(line);
            let _ = write!(
                out,
                "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":",
                crate::log::rfc3339(now)
            );
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &*message);
            let _ = writeln!(
                out,
                ",\"event\":\"worker_output\",\"worker\":{id},\"slot\":{slot},\"pid\":{pid},\
                 \"generation\":{generation},\"stream\":\"{}\"{},\"target\":\"worker\"}}",
                stream.name(),
                if cut { ",\"cut\":true" } else { "" }
            );
        }
        _ => {
            let mark = if cut { " cut" } else { "" };
            let _ = write!(out, "[{slot} {id} {pid}{mark}] ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
}

/// One pipe's read end and its line state.
struct Pipe {
    fd: OwnedFd,
    stream: Stream,
    lines: Lines,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The turn's budget was used up: there may be more.
    More,
    /// Nothing more for now (`EAGAIN`).
    Empty,
    /// Every writer is gone (or the pipe failed).
    Eof,
}

/// A worker's pipes.
struct Outputs {
    who: Who,
    pipes: [Option<Pipe>; 2],
    /// The worker's tree is gone: bytes still allowed before the pipes close anyway.
    after_gone: Option<usize>,
}

/// Every worker's output pipes, and the counts of what could not be written.
pub(crate) struct Output {
    mode: WorkerOutput,
    workers: HashMap<WorkerId, Outputs>,
    /// Pipes that may hold more than their last turn read.
    unread: BTreeSet<(WorkerId, usize)>,
    /// The read buffer, shared by all pipes.
    scratch: Vec<u8>,
    /// The lines being formatted into one write.
    batch: Vec<u8>,
    batch_lines: u64,
    /// Lines dropped in all.
    dropped: u64,
    /// Dropped since the last warning.
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl Output {
    pub(crate) fn new(mode: WorkerOutput) -> Self {
        if mode != WorkerOutput::Inherit {
            crate::log::open_output_sinks();
        }
        Self {
            mode,
            workers: HashMap::new(),
            unread: BTreeSet::new(),
            scratch: Vec::new(),
            batch: Vec::new(),
            batch_lines: 0,
            dropped: 0,
            unlogged: 0,
            last_logged: None,
        }
    }

    /// Whether the workers get pipes at all.
    pub(crate) fn piped(&self) -> bool {
        self.mode != WorkerOutput::Inherit
    }

    /// Lines of the workers' output dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Some pipe may hold more than its last turn read.
    pub(crate) fn has_backlog(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Pipes are open (for a worker that is gone, their last bytes are being read).
    #[cfg(test)]
    fn open_pipes(&self) -> usize {
        self.workers
            .values()
            .map(|o| o.pipes.iter().flatten().count())
            .sum()
    }

    /// Watches worker `who`'s two read ends (`[stdout, stderr]`, non-blocking) with
    /// `tokens`. On failure nothing is left registered.
    pub(crate) fn add(
        &mut self,
        id: WorkerId,
        who: Who,
        reads: [OwnedFd; 2],
        tokens: [Token; 2],
        registry: &Registry,
    ) -> std::io::Result<()> {
        let [out, err] = reads;
        let pipes = [
            Some(Pipe {
                fd: out,
                stream: Stream::Stdout,
                lines: Lines::default(),
            }),
            Some(Pipe {
                fd: err,
                stream: Stream::Stderr,
                lines: Lines::default(),
            }),
        ];
        for (index, token) in tokens.into_iter().enumerate() {
            let Some(pipe) = &pipes[index] else { continue };
            let raw = pipe.fd.as_raw_fd();
            if let Err(error) = registry.register(&mut SourceFd(&raw), token, Interest::READABLE) {
                for pipe in pipes.iter().take(index).flatten() {
                    let _ = registry.deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
                }
                return Err(error);
            }
        }
        self.workers.insert(
            id,
            Outputs {
                who,
                pipes,
                after_gone: None,
            },
        );
        Ok(())
    }

    /// Pipe `index` (0 stdout, 1 stderr) of `id` is readable, or waited in the backlog.
    pub(crate) fn readable(&mut self, id: WorkerId, index: usize, registry: &Registry) {
        self.unread.remove(&(id, index));
        let Some(outputs) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(pipe) = outputs.pipes.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let budget = match outputs.after_gone {
            Some(left) => left.min(READ_PER_TURN),
            None => READ_PER_TURN,
        };
        if self.scratch.len() < READ_PER_TURN {
            self.scratch.resize(READ_PER_TURN, 0);
        }
        let who = outputs.who;
        let stream = pipe.stream;
        let (mode, batch, batch_lines, dropped) = (
            self.mode,
            &mut self.batch,
            &mut self.batch_lines,
            &mut self.dropped,
        );
        let mut read_bytes = 0;
        let mut outcome = Read::More;
        let mut emit = |line: &[u8], cut: bool| {
            let before = batch.len();
            format_line(mode, &who, stream, line, cut, SystemTime::now(), batch);
            if before > 0 && batch.len() > BATCH {
                // Written whole lines at a time: the lines before this one go first.
                let this = batch.split_off(before);
                flush(stream, batch, batch_lines, dropped);
                *batch = this;
            }
            *batch_lines += 1;
        };
        while read_bytes < budget {
            let room = &mut self.scratch[..budget - read_bytes];
            match rustix::io::read(&pipe.fd, room) {
                Ok(0) => {
                    outcome = Read::Eof;
                    break;
                }
                Ok(n) => {
                    read_bytes += n;
                    pipe.lines.push(&self.scratch[..n], &mut emit);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    outcome = Read::Empty;
                    break;
                }
                Err(error) => {
                    tracing::warn!(
                        worker = who.id,
                        stream = stream.name(),
                        "reading the worker's output: {error}"
                    );
                    outcome = Read::Eof;
                    break;
                }
            }
        }
        if let Some(left) = outputs.after_gone.as_mut() {
            *left = left.saturating_sub(read_bytes);
            if *left == 0 || outcome == Read::Empty {
                // The tree is gone: what a pipe still holds after this is someone else's.
                outcome = Read::Eof;
            }
        }
        if outcome == Read::Eof {
            pipe.lines.finish(&mut emit);
        }
        flush(stream, batch, batch_lines, dropped);
        match outcome {
            Read::More => {
                self.unread.insert((id, index));
            }
            Read::Empty => {}
            Read::Eof => {
                if let Some(pipe) = outputs.pipes[index].take() {
                    let _ = registry.deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
                }
                if outputs.pipes.iter().all(Option::is_none) {
                    self.workers.remove(&id);
                }
            }
        }
        self.warn_of_drops();
    }

    /// Worker `id`'s tree is gone: read what its pipes hold (this turn's share of
    /// [`AFTER_GONE`], the rest in the backlog), then close them.
    pub(crate) fn gone(&mut self, id: WorkerId, registry: &Registry) {
        let Some(outputs) = self.workers.get_mut(&id) else {
            return;
        };
        outputs.after_gone = Some(AFTER_GONE);
        for index in 0..2 {
            self.readable(id, index, registry);
        }
    }

    /// The master exits: one last bounded read of every pipe, each closed after it.
    pub(crate) fn finish(&mut self, registry: &Registry) {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            if let Some(outputs) = self.workers.get_mut(&id) {
                outputs.after_gone = Some(READ_PER_TURN);
            }
            for index in 0..2 {
                self.readable(id, index, registry);
            }
        }
        self.workers.clear();
        self.unread.clear();
        // What was dropped since the last warning is said now, however recent that was.
        self.last_logged = None;
        self.warn_of_drops();
    }

    /// Goes on reading the pipes earlier turns left data in.
    pub(crate) fn work_backlog(&mut self, registry: &Registry) {
        let unread: Vec<(WorkerId, usize)> = std::mem::take(&mut self.unread).into_iter().collect();
        for (id, index) in unread {
            self.readable(id, index, registry);
        }
    }

    /// One warning per [`DROPS_LOG_EVERY`] at most, with the count since the last.
    fn warn_of_drops(&mut self) {
        if self.unlogged == self.dropped {
            return;
        }
        let now = Instant::now();
        let due = self.last_logged.map_or(true, |at| {
            now.saturating_duration_since(at) >= DROPS_LOG_EVERY
        });
        if !due {
            return;
        }
        let count = self.dropped - self.unlogged;
        self.unlogged = self.dropped;
        self.last_logged = Some(now);
        tracing::warn!(
            event = "worker_lines_dropped",
            dropped = count,
            total = self.dropped,
            "workers' output lines dropped: the master's stdout or stderr was full or closed"
        );
    }
}

/// Writes the batch to the master's stream that matches `stream`, or counts its lines
/// as dropped.
fn flush(stream: Stream, batch: &mut Vec<u8>, lines: &mut u64, dropped: &mut u64) {
    if batch.is_empty() {
        return;
    }
    if !crate::log::write_output(stream == Stream::Stdout, batch) {
        *dropped += *lines;
    }
    batch.clear();
    *lines = 0;
}

/// The descriptors the master holds per worker for its output in `mode`: the read ends
/// of its two pipes (on top of what [`fds_needed`](crate::rlimit::fds_needed) counts).
pub(crate) fn fds_per_worker(mode: WorkerOutput) -> u64 {
    match mode {
        WorkerOutput::Inherit => 0,
        _ => 2,
    }
}

/// A pipe for one of a worker's streams: `(read end, write end)`, both close-on-exec;
/// the read end (the master's) non-blocking, the write end (the worker's fd 1 or 2, set
/// by `dup2` in the child) blocking, as a worker's stdout is.
pub(crate) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(read.as_fd(), true)?;
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let mut emit = |line: &[u8], cut: bool| out.push((line.to_vec(), cut));
        for chunk in chunks {
            lines.push(chunk, &mut emit);
        }
        lines.finish(&mut emit);
        out
    }

    #[test]
    fn lines_are_split_across_reads_and_the_last_partial_one_is_flushed() {
        let got = split(&[b"a\nb", b"c\n\nd"]);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"a".to_vec(), false),
            (b"bc".to_vec(), false),
            (b"".to_vec(), false),
            (b"d".to_vec(), false),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_line_is_cut_at_max_line_and_the_rest_discarded() {
        let exact = vec![b'x'; MAX_LINE];
        let got = split(&[&exact, b"\n"]);
        assert_eq!(
            got,
            vec![(exact.clone(), false)],
            "exactly MAX_LINE is whole"
        );

        let long = vec![b'y'; MAX_LINE * 3 + 5];
        let got = split(&[&long[..100], &long[100..], b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (vec![b'y'; MAX_LINE], true));
        assert_eq!(got[1], (b"next".to_vec(), false));

        // Cut with no newline ever: one cut line, nothing at the end.
        let got = split(&[&long]);
        assert_eq!(got, vec![(vec![b'y'; MAX_LINE], true)]);
    }

    /// The fuzz target's property (`crate::fuzz::worker_lines`: the lines of a plain
    /// model, however the bytes are chunked) over a few thousand seeded inputs, mostly
    /// newlines and letters so that lines of every length around the limit come up.
    #[test]
    fn splitting_matches_the_model_whatever_the_chunks() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let data: Vec<u8> = (0..len)
                .map(|i| match (i, next() % 8) {
                    (0 | 1, _) => next() as u8,
                    (_, 0) => b'\n',
                    (_, n) => b'a' + n as u8,
                })
                .collect();
            crate::fuzz::worker_lines(&data);
        }
    }

    #[test]
    fn the_forms_are_as_documented() {
        let who = Who {
            id: 7,
            slot: 2,
            pid: 4242,
            generation: 1,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_156_518_123_456);
        let form = |mode, stream, line: &[u8], cut| {
            let mut out = Vec::new();
            format_line(mode, &who, stream, line, cut, at, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            form(WorkerOutput::Prefix, Stream::Stdout, b"hello", false),
            "[2 7 4242] hello\n"
        );
        assert_eq!(
            form(WorkerOutput::Prefix, Stream::Stderr, b"long", true),
            "[2 7 4242 cut] long\n"
        );
        assert_eq!(
            form(WorkerOutput::Json, Stream::Stdout, b"hello", false),
            "{\"timestamp\":\"2026-12-01T20:21:58.123456Z\",\"level\":\"INFO\",\
             \"message\":\"hello\",\"event\":\"worker_output\",\"worker\":7,\"slot\":2,\
             \"pid\":4242,\"generation\":1,\"stream\":\"stdout\",\"target\":\"worker\"}\n"
        );
        let line = form(
            WorkerOutput::Json,
            Stream::Stderr,
            b"quote \" tab \t \xff end",
            true,
        );
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["message"], "quote \" tab \t \u{fffd} end");
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["cut"], true);
    }

    #[test]
    fn a_pipe_nobody_writes_to_any_more_is_closed_once_its_worker_is_gone() {
        let poll = mio::Poll::new().unwrap();
        let mut output = Output::new(WorkerOutput::Prefix);
        let (out_read, out_write) = pipe().unwrap();
        let (err_read, err_write) = pipe().unwrap();
        let who = Who {
            id: 1,
            slot: 0,
            pid: 1,
            generation: 1,
        };
        output
            .add(
                WorkerId(1),
                who,
                [out_read, err_read],
                [Token(10), Token(11)],
                poll.registry(),
            )
            .unwrap();
        drop(err_write);
        output.readable(WorkerId(1), 1, poll.registry());
        assert_eq!(output.open_pipes(), 1, "stderr ended at its EOF");
        // A writer lives on (a daemon outside the tree): closed at the worker's end.
        output.readable(WorkerId(1), 0, poll.registry());
        assert_eq!(output.open_pipes(), 1);
        output.gone(WorkerId(1), poll.registry());
        assert_eq!(output.open_pipes(), 0);
        assert!(!output.has_backlog());
        drop(out_write);
    }
}
