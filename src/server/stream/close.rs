//! Why a TURN stream connection ends, and which counters each reason bumps: the same ones
//! the tokio connection tasks of `tcp.rs` bumped for the same end, so `/metrics` reads the
//! same whichever loop serves the client.

use crate::server::stats::Event;

/// Why a connection is to be closed. Whatever the reason, the loop then drops the
/// connection and closes its 5-tuple in the allocation manager (RFC 8656 §3.1: an
/// allocation over TCP/TLS lives as long as its connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The client closed its end: TCP FIN, or a TLS `close_notify`.
    PeerClosed {
        /// Bytes of an unfinished frame were left: a message cut short.
        mid_frame: bool,
    },
    /// A socket error (a reset, most often), a TLS record that failed after the
    /// handshake, or a TLS stream cut without `close_notify`.
    Io {
        /// Bytes of an unfinished frame were left: a message cut short.
        mid_frame: bool,
    },
    /// The next bytes are neither STUN nor ChannelData: a stream cannot be resynchronised
    /// (RFC 8656 §12.5).
    Malformed,
    /// The TLS handshake failed, or the client left during it.
    TlsHandshakeFailed,
    /// The TLS handshake was not finished `tls-handshake-timeout` after accept.
    TlsHandshakeTimeout,
    /// Nothing was read for `tcp-idle-timeout` and the connection holds no allocation.
    IdleTimeout,
    /// The connection held no allocation for `tcp-allocation-timeout`.
    AllocationTimeout,
    /// Bytes waited to be written and the socket took none of them for
    /// `tcp-idle-timeout` (the writer's timeout in `tcp.rs`).
    WriteTimeout,
    /// More than `max-tcp-queued-bytes` waited to be written: the client is not reading.
    Overflow,
    /// Not an end: the connection stopped carrying STUN (an RFC 6062 ConnectionBind
    /// succeeded, or a data connection's buffer is full), so the read stops here.
    Spliced,
    /// An RFC 6062 data connection whose peer connection closed, or whose allocation
    /// ended or whose peer the rules now refuse: the pair closes.
    RelayEnded,
}

impl Close {
    /// The counters to bump for this end: a read error is an I/O error, a stream left
    /// mid-message is broken as well, a failed handshake is broken, and a client whose
    /// writes made no progress for `tcp-idle-timeout` stopped reading, like one whose queue
    /// overflowed: a slow consumer.
    pub(crate) fn events(self) -> &'static [Event] {
        match self {
            Close::PeerClosed { mid_frame: false } => &[],
            Close::PeerClosed { mid_frame: true }
            | Close::Malformed
            | Close::TlsHandshakeFailed => &[Event::TcpBroken],
            Close::Io { mid_frame: false } => &[Event::IoError],
            Close::Io { mid_frame: true } => &[Event::IoError, Event::TcpBroken],
            Close::TlsHandshakeTimeout => &[Event::TlsHandshakeTimeout],
            Close::IdleTimeout => &[Event::TcpIdleClosed],
            Close::AllocationTimeout => &[Event::TcpAllocationTimeout],
            Close::Overflow | Close::WriteTimeout => &[Event::TcpSlowConsumer],
            Close::Spliced | Close::RelayEnded => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::stats::Stats;

    #[test]
    fn each_end_is_counted_as_the_tokio_tasks_counted_it() {
        let count = |close: Close| {
            let stats = Stats::default();
            let counters = stats.register();
            for &e in close.events() {
                counters.count(e);
            }
            let s = stats.snapshot();
            (
                s.io_errors,
                s.tcp_broken,
                s.tcp_idle_closed,
                s.tcp_allocation_timeout,
                s.tls_handshake_timeout,
                s.tcp_slow_consumer,
            )
        };
        let mid = |mid_frame| (Close::PeerClosed { mid_frame }, Close::Io { mid_frame });
        let (clean, reset) = mid(false);
        let (cut, cut_reset) = mid(true);
        assert_eq!(count(clean), (0, 0, 0, 0, 0, 0));
        assert_eq!(count(cut), (0, 1, 0, 0, 0, 0));
        assert_eq!(count(reset), (1, 0, 0, 0, 0, 0));
        assert_eq!(count(cut_reset), (1, 1, 0, 0, 0, 0));
        assert_eq!(count(Close::Malformed), (0, 1, 0, 0, 0, 0));
        assert_eq!(count(Close::TlsHandshakeFailed), (0, 1, 0, 0, 0, 0));
        assert_eq!(count(Close::IdleTimeout), (0, 0, 1, 0, 0, 0));
        assert_eq!(count(Close::AllocationTimeout), (0, 0, 0, 1, 0, 0));
        assert_eq!(count(Close::TlsHandshakeTimeout), (0, 0, 0, 0, 1, 0));
        assert_eq!(count(Close::Overflow), (0, 0, 0, 0, 0, 1));
        assert_eq!(count(Close::WriteTimeout), (0, 0, 0, 0, 0, 1));
    }
}
