//! The plain-TCP half of a stream connection: reading the socket straight into the
//! connection's [`InBuf`] and writing its [`OutBuf`] straight to the socket.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use super::close::Close;
use super::inbuf::{InBuf, READ_BUDGET, ReadOutcome};
use super::outbuf::OutBuf;
use super::timers::Timers;

/// Reads a plain TCP stream into `inbuf`, handing complete frames to `deliver`.
pub(crate) fn read(
    socket: &mut TcpStream,
    inbuf: &mut InBuf,
    timers: &mut Timers,
    now: Instant,
    mut deliver: impl FnMut(&mut InBuf) -> Result<(), Close>,
) -> Result<ReadOutcome, Close> {
    let mut budget = READ_BUDGET;
    while budget > 0 {
        let room = inbuf.spare();
        if room.is_empty() {
            // Framing never leaves the largest buffer full without a frame.
            return Err(Close::Malformed);
        }
        match socket.read(room) {
            Ok(0) => {
                return Err(Close::PeerClosed {
                    mid_frame: !inbuf.is_empty(),
                });
            }
            Ok(n) => {
                inbuf.filled(n);
                timers.read(now);
                budget = budget.saturating_sub(n);
                deliver(inbuf)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                return Err(Close::Io {
                    mid_frame: !inbuf.is_empty(),
                });
            }
        }
    }
    Ok(ReadOutcome::MoreToRead)
}

/// Writes `out` to a plain TCP stream until it is empty or the socket is full.
pub(crate) fn write(socket: &mut TcpStream, out: &mut OutBuf) -> Result<bool, Close> {
    let mut progress = false;
    while !out.is_empty() {
        match socket.write(out.pending()) {
            Ok(0) => return Err(Close::Io { mid_frame: false }),
            Ok(n) => {
                out.consume(n);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Close::Io { mid_frame: false }),
        }
    }
    Ok(progress)
}
