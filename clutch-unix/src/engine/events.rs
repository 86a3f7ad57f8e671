//! The event stream's lines (`clutch events`, the control protocol's `events`): each
//! event as the JSON log line `clutch run --log-format json` writes for it, produced by
//! the very same `log_event` call run once more under a private `tracing` dispatcher,
//! so that the two can never disagree about a field.
//!
//! The private dispatcher has no filter (subscribers see every event, whatever
//! `RUST_LOG` says) and exists only while there are subscribers: without any, the
//! process's `tracing` set-up is exactly as if this module did not exist.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;

/// Captures what `tracing` events write, as JSON lines (see the module docs).
#[derive(Default)]
pub(crate) struct Capture {
    /// The private dispatcher and the buffer its writer fills; `None` while nobody
    /// subscribes.
    active: Option<(Dispatch, Buffer)>,
}

impl Capture {
    /// The lines the `tracing` events that `log` emits make, one per event, each with
    /// its newline.
    pub(crate) fn lines(&mut self, log: impl FnOnce()) -> Vec<u8> {
        let (dispatch, buffer) = self.active.get_or_insert_with(|| {
            let buffer = Buffer::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_max_level(tracing::Level::TRACE)
                .with_writer(buffer.clone())
                .finish();
            // Creating the dispatcher registers it with every callsite, so those the
            // global subscriber filters out (`RUST_LOG=warn`) are asked again.
            (Dispatch::new(subscriber), buffer)
        });
        tracing::dispatcher::with_default(dispatch, log);
        std::mem::take(&mut *buffer.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Nobody subscribes any more: drop the private dispatcher and let `tracing` forget
    /// it (callsites the global subscriber filters out are off again).
    pub(crate) fn release(&mut self) {
        if self.active.take().is_some() {
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// The lines written so far (shared with the writer the subscriber makes per event).
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = BufferWriter;
    fn make_writer(&'a self) -> BufferWriter {
        BufferWriter(self.0.clone())
    }
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_every_level_as_json_lines_and_only_while_active() {
        let mut capture = Capture::default();
        let lines = capture.lines(|| {
            tracing::info!(event = "worker_ready", worker = 1, "worker ready");
            tracing::debug!(event = "quiet", "a debug line");
        });
        let text = String::from_utf8(lines).unwrap();
        let values: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values.len(), 2, "{text}");
        assert_eq!(values[0]["event"], "worker_ready");
        assert_eq!(values[0]["worker"], 1);
        assert_eq!(values[0]["level"], "INFO");
        assert_eq!(values[0]["message"], "worker ready");
        assert!(values[0]["timestamp"].is_string());
        assert!(values[0]["target"].is_string());
        assert_eq!(values[1]["level"], "DEBUG");
        capture.release();
        assert!(capture.active.is_none());
        // Usable again after a release.
        assert!(!capture.lines(|| tracing::warn!("again")).is_empty());
    }
}
