//! A stream connection's outgoing bytes: one contiguous buffer used as a queue (bytes are
//! appended at the end and written from a read offset), bounded in bytes by
//! `max-tcp-queued-bytes`.
//!
//! Queuing a frame copies its parts (a ChannelData header and its payload, a Data
//! indication, a response) into the buffer, so relaying a packet allocates nothing once the
//! buffer has grown to the connection's usual backlog. The bound follows `crate::outbox`: a
//! frame that would take a non-empty queue past the limit is refused and the queue is
//! *overflowed* for good (its client is to be closed); a frame is always taken into an
//! empty queue, so the most it holds is the limit plus one frame. There is no per-item
//! overhead to count: the items share one allocation.

/// Past this capacity a drained buffer gives its memory back (down to [`KEEP`]), so one
/// burst does not pin a large buffer to an idle connection.
const SHRINK_ABOVE: usize = 64 * 1024;
/// What a drained buffer keeps after a burst.
const KEEP: usize = 16 * 1024;

/// The queue refused a frame: it is past `max-tcp-queued-bytes`, now or before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// The outgoing half of a connection as a message handler sees it: it can queue replies
/// to the client the message came from, nothing else.
#[derive(Debug)]
pub(crate) struct Out<'a>(&'a mut OutBuf, bool);

impl<'a> Out<'a> {
    /// Wraps the connection's queue for one message handler.
    pub(crate) fn new(out: &'a mut OutBuf) -> Self {
        Self(out, false)
    }

    /// Queues one frame for the client: see [`OutBuf::queue`]. On `Err` the read that
    /// called the handler ends with [`super::close::Close::Overflow`].
    pub(crate) fn queue(&mut self, parts: &[&[u8]]) -> Result<(), Overflow> {
        self.0.queue(parts)
    }

    /// The connection stops carrying STUN after this message (an RFC 6062 ConnectionBind
    /// succeeded): the read ends, and what follows is relayed as it is.
    pub(crate) fn stop_framing(&mut self) {
        self.1 = true;
    }

    /// Whether [`Out::stop_framing`] was called.
    pub(crate) fn stopped(&self) -> bool {
        self.1
    }
}

/// Bytes waiting to be written to one connection.
#[derive(Debug)]
pub(crate) struct OutBuf {
    /// `buf[start..]` waits to be written.
    buf: Vec<u8>,
    start: usize,
    /// `max-tcp-queued-bytes`.
    limit: usize,
    /// Bytes handed on (to rustls) that may not have reached the socket yet; counted
    /// against the limit with the rest.
    handed_on: usize,
    overflowed: bool,
}

impl OutBuf {
    /// An empty queue bounded by `limit` bytes; allocates nothing until a frame comes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            limit,
            handed_on: 0,
            overflowed: false,
        }
    }

    /// Queues one frame made of `parts`, padded with zeros to a multiple of 4 bytes: a
    /// stream carries ChannelData padded (RFC 8656 §12.5), and STUN messages are whole
    /// words already. Refused when it would take a non-empty queue past the limit, or
    /// once the queue has overflowed.
    pub(crate) fn queue(&mut self, parts: &[&[u8]]) -> Result<(), Overflow> {
        if self.overflowed {
            return Err(Overflow);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let padded = len.next_multiple_of(4);
        let queued = self.queued();
        if queued > 0 && queued.saturating_add(padded) > self.limit {
            self.overflowed = true;
            return Err(Overflow);
        }
        self.compact();
        self.buf.reserve(padded);
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.buf.resize(self.buf.len() + (padded - len), 0);
        Ok(())
    }

    /// Appends `data` as it is (no padding, no limit: the caller bounds what it offers,
    /// RFC 6062 data connections).
    pub(crate) fn push_raw(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Whether a frame was refused for the limit: the connection is to be closed.
    pub(crate) fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes counted against the limit: waiting here, plus handed on and not known written.
    pub(crate) fn queued(&self) -> usize {
        self.pending().len() + self.handed_on
    }

    /// The bytes waiting, oldest first.
    pub(crate) fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Whether nothing waits here (bytes handed on aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.start >= self.buf.len()
    }

    /// The first `n` pending bytes were written to the socket.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.is_empty() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf.shrink_to(KEEP);
            }
        }
    }

    /// The first `n` pending bytes were handed to a layer that buffers them (rustls) and
    /// still count until [`OutBuf::handed_on_written`].
    pub(crate) fn hand_on(&mut self, n: usize) {
        let n = n.min(self.pending().len());
        self.consume(n);
        self.handed_on += n;
    }

    /// Everything handed on has reached the socket.
    pub(crate) fn handed_on_written(&mut self) {
        self.handed_on = 0;
    }

    /// Moves the pending bytes to the front once more has been written than waits, so
    /// the buffer does not grow with what was already sent (amortised: each byte moves at
    /// most once per time it is written).
    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_copied_in_order_and_padded_to_four() {
        let mut out = OutBuf::new(1000);
        out.queue(&[&[0x40, 0x00, 0x00, 0x05], b"hello"]).unwrap();
        out.queue(&[&[1; 20], &[]]).unwrap();
        out.queue(&[&[0x40, 0x01, 0x00, 0x00]]).unwrap();
        let mut want = vec![0x40, 0x00, 0x00, 0x05];
        want.extend_from_slice(b"hello\0\0\0");
        want.extend_from_slice(&[1; 20]);
        want.extend_from_slice(&[0x40, 0x01, 0x00, 0x00]);
        assert_eq!(out.pending(), &want[..]);
        assert_eq!(out.queued(), 12 + 20 + 4);
    }

    #[test]
    fn holds_up_to_its_limit_then_overflows_for_good() {
        let mut out = OutBuf::new(4000);
        for _ in 0..4 {
            out.queue(&[&[7; 1000]]).unwrap();
        }
        assert!(!out.is_overflowed());
        assert_eq!(out.queue(&[&[7; 1]]), Err(Overflow));
        assert!(out.is_overflowed());
        assert_eq!(out.queued(), 4000, "the refused frame is not kept");
        // Writing makes room, but an overflowed queue takes nothing more: its client is
        // being closed.
        out.consume(4000);
        assert_eq!(out.queue(&[&[7; 1]]), Err(Overflow));
    }

    #[test]
    fn one_frame_larger_than_the_limit_goes_into_an_empty_queue() {
        let mut out = OutBuf::new(100);
        out.queue(&[&[0; 10_000]]).unwrap();
        assert_eq!(out.queue(&[&[0; 4]]), Err(Overflow));
    }

    #[test]
    fn bytes_handed_on_count_until_written() {
        let mut out = OutBuf::new(3000);
        out.queue(&[&[1; 2000]]).unwrap();
        out.hand_on(2000);
        assert!(out.is_empty());
        assert_eq!(out.queued(), 2000);
        assert_eq!(
            out.queue(&[&[1; 1200]]),
            Err(Overflow),
            "rustls still holds 2000"
        );
        let mut out = OutBuf::new(3000);
        out.queue(&[&[1; 2000]]).unwrap();
        out.hand_on(2000);
        out.handed_on_written();
        assert_eq!(out.queued(), 0);
        out.queue(&[&[1; 1200]]).unwrap();
    }

    #[test]
    fn a_steady_stream_reuses_one_buffer() {
        let mut out = OutBuf::new(64 * 1024);
        let frame = [9u8; 1200];
        for round in 0..10_000 {
            out.queue(&[&[0x40, 0, 0x04, 0xb0], &frame]).unwrap();
            out.queue(&[&[0x40, 0, 0x04, 0xb0], &frame]).unwrap();
            // The socket takes a little less than was queued, then catches up.
            let n = if round % 10 == 9 {
                out.pending().len()
            } else {
                1500
            };
            out.consume(n);
        }
        assert!(out.buf.capacity() <= 64 * 1024, "{}", out.buf.capacity());
        assert!(!out.is_overflowed());
    }

    #[test]
    fn partial_writes_keep_the_order() {
        let mut out = OutBuf::new(1 << 20);
        let mut sent = Vec::new();
        let mut want = Vec::new();
        for i in 0..200u32 {
            let frame = i.to_be_bytes();
            want.extend_from_slice(&frame);
            out.queue(&[&frame]).unwrap();
            let take = (i as usize * 7) % (out.pending().len() + 1);
            sent.extend_from_slice(&out.pending()[..take]);
            out.consume(take);
        }
        sent.extend_from_slice(out.pending());
        out.consume(out.pending().len());
        assert_eq!(sent, want);
        assert!(out.is_empty());
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut out = OutBuf::new(1 << 20);
        for _ in 0..500 {
            out.queue(&[&[0; 1000]]).unwrap();
        }
        out.consume(500_000);
        assert!(out.buf.capacity() <= KEEP);
    }
}
