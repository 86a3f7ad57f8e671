//! The master engine: the event loop ([`driver`]) that feeds the `clutch_proto` core
//! with facts from the OS toolkit and carries out its actions, the control socket's
//! server side ([`control_server`]) and its event stream's lines ([`events`]), the
//! `/metrics` endpoint ([`metrics_server`]), the messages to the service manager
//! ([`service`]), and the workers' output read through pipes ([`output`]).

pub(crate) mod control_server;
pub(crate) mod driver;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod metrics_server;
pub(crate) mod output;
pub(crate) mod service;

use std::io;

/// How far [`write_queued`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// Everything was written.
    Written,
    /// The stream would block (or took nothing): the rest waits for its next readiness.
    Pending,
    /// The stream failed: the peer is gone.
    Broken,
}

/// Writes the front of `output` with `write` (a non-blocking stream's) until all of it
/// is written, the stream would block or takes nothing, or it fails; what was written
/// leaves `output`. The one write loop of the control and metrics servers.
pub(crate) fn write_queued(
    output: &mut Vec<u8>,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Queue {
    while !output.is_empty() {
        match write(output) {
            Ok(0) => return Queue::Pending,
            Ok(n) => {
                output.drain(..n.min(output.len()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Queue::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Queue::Broken,
        }
    }
    Queue::Written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that takes `chunk` bytes per write, answers with `script` first.
    fn stream(
        taken: &mut Vec<u8>,
        script: &mut Vec<io::Result<usize>>,
        bytes: &[u8],
    ) -> io::Result<usize> {
        if let Some(answer) = script.pop() {
            let n = answer?;
            taken.extend_from_slice(&bytes[..n]);
            return Ok(n);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn the_queue_is_written_in_order_past_interruptions() {
        let mut output = b"hello world".to_vec();
        let mut taken = Vec::new();
        let mut script = vec![Ok(6), Err(io::ErrorKind::Interrupted.into()), Ok(5)];
        let queue = write_queued(&mut output, |b| stream(&mut taken, &mut script, b));
        assert_eq!(queue, Queue::Written);
        assert_eq!(taken, b"hello world");
        assert!(output.is_empty());
    }

    #[test]
    fn a_full_stream_keeps_the_rest_and_a_broken_one_says_so() {
        let mut output = b"hello world".to_vec();
        let mut taken = Vec::new();
        let mut script = vec![Ok(6)];
        let queue = write_queued(&mut output, |b| stream(&mut taken, &mut script, b));
        assert_eq!(queue, Queue::Pending);
        assert_eq!(output, b"world");

        let mut script = vec![Ok(0)];
        let queue = write_queued(&mut output, |b| stream(&mut taken, &mut script, b));
        assert_eq!(queue, Queue::Pending);
        assert_eq!(output, b"world");

        let mut script = vec![Err(io::ErrorKind::BrokenPipe.into())];
        let queue = write_queued(&mut output, |b| stream(&mut taken, &mut script, b));
        assert_eq!(queue, Queue::Broken);
        assert_eq!(output, b"world");
        assert_eq!(taken, b"hello ");
    }
}
