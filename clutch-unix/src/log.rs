//! gs-clutch's `log` option, on top of `tracing`: off, the default subscriber, or a user
//! function that receives every log line.

use std::io::{self, IsTerminal};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

/// Where clutch's log lines go.
#[derive(Clone, Default)]
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
                .with_env_filter(filter())
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr)
                .try_init(),
            Self::Json => tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_env_filter(filter())
                .with_writer(io::stderr)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

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
