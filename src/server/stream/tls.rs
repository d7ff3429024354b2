//! The TLS half of a stream connection: a `rustls::ServerConnection` driven by hand over a
//! non-blocking socket (`read_tls` → `process_new_packets` → `reader`, and `writer` →
//! `write_tls`), where `tokio-rustls` drove it for the tokio tasks.
//!
//! Plaintext to send waits in the connection's [`OutBuf`] and is handed to rustls only as
//! fast as the socket takes records (rustls's own buffer is capped at [`BUFFER_LIMIT`]),
//! so many frames share a record and what rustls holds is counted against
//! `max-tcp-queued-bytes` with the rest ([`OutBuf::hand_on`]).

use std::io::{self, Read};
use std::time::Instant;

use mio::net::TcpStream;
use rustls::ServerConnection;

use super::close::Close;
use super::inbuf::{InBuf, READ_BUDGET, ReadOutcome};
use super::outbuf::OutBuf;
use super::timers::Timers;

/// What rustls may hold of records not yet written (its default is 64 KiB).
pub(crate) const BUFFER_LIMIT: usize = 32 * 1024;

/// Reads TLS records from `socket` (up to [`READ_BUDGET`] bytes), decrypts them into
/// `inbuf` and hands complete frames to `deliver`. Errors are as after the handshake; the
/// caller turns any end during the handshake into [`Close::TlsHandshakeFailed`].
pub(crate) fn read(
    session: &mut ServerConnection,
    socket: &mut TcpStream,
    inbuf: &mut InBuf,
    timers: &mut Timers,
    now: Instant,
    mut deliver: impl FnMut(&mut InBuf) -> Result<(), Close>,
) -> Result<ReadOutcome, Close> {
    let mut budget = READ_BUDGET;
    loop {
        let mut drained = false;
        match session.read_tls(socket) {
            // End of stream: rustls knows, and its reader says how it ended below.
            Ok(0) => {}
            Ok(n) => {
                timers.read(now);
                budget = budget.saturating_sub(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return Err(Close::Io {
                    mid_frame: !inbuf.is_empty(),
                });
            }
        }
        let handshaking = session.is_handshaking();
        if let Err(e) = session.process_new_packets() {
            tracing::debug!("tls: {e}");
            // rustls queued an alert saying why: one try to send it.
            let _ = session.write_tls(socket);
            return Err(Close::Io {
                mid_frame: !inbuf.is_empty(),
            });
        }
        if handshaking && !session.is_handshaking() {
            timers.established(now);
        }
        loop {
            let room = inbuf.spare();
            if room.is_empty() {
                return Err(Close::Malformed);
            }
            match session.reader().read(room) {
                // close_notify: the client closed cleanly.
                Ok(0) => {
                    return Err(Close::PeerClosed {
                        mid_frame: !inbuf.is_empty(),
                    });
                }
                Ok(n) => {
                    inbuf.filled(n);
                    deliver(inbuf)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // UnexpectedEof: the stream ended without close_notify.
                Err(_) => {
                    return Err(Close::Io {
                        mid_frame: !inbuf.is_empty(),
                    });
                }
            }
        }
        if drained {
            return Ok(ReadOutcome::Drained);
        }
        if budget == 0 {
            return Ok(ReadOutcome::MoreToRead);
        }
    }
}

/// Hands `out` to rustls and writes its records to `socket` until both are empty or the
/// socket is full; whether the socket took anything. Plaintext waits in `out` while the
/// handshake is under way.
pub(crate) fn write(
    session: &mut ServerConnection,
    socket: &mut TcpStream,
    out: &mut OutBuf,
) -> Result<bool, Close> {
    let mut progress = false;
    loop {
        let mut took = 0;
        if !session.is_handshaking() && !out.is_empty() {
            took = io::Write::write(&mut session.writer(), out.pending())
                .map_err(|_| Close::Io { mid_frame: false })?;
            out.hand_on(took);
        }
        if !session.wants_write() {
            out.handed_on_written();
            if took == 0 {
                return Ok(progress);
            }
            continue;
        }
        match session.write_tls(socket) {
            Ok(0) => return Err(Close::Io { mid_frame: false }),
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(progress),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Close::Io { mid_frame: false }),
        }
    }
}
