//! A stream connection's incoming bytes and their framing into STUN and ChannelData
//! messages ([`crate::stun::next_frame`]): the socket reads into the free space at the end,
//! complete frames are handed out in place from the front.
//!
//! The buffer starts at 4 KiB (what a TURN client's frames need) and grows only for a frame
//! that does not fit, up to one largest frame plus a read's worth; it never grows past
//! that, whatever the client sends, because a buffer that large always holds a complete
//! frame or a framing error.

use std::ops::Range;

use crate::stun::channel_data;
use crate::stun::framing::MAX_FRAME_LEN;
use crate::stun::{Frame, Malformed, next_frame};

/// The most a wake-up reads from one connection before the loop serves the others.
pub(crate) const READ_BUDGET: usize = 64 * 1024;

/// How a read of the socket ended without closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// The socket has nothing more now: wait for the next readable event.
    Drained,
    /// The read budget ran out: more may wait, and no new event will say so.
    MoreToRead,
}

/// The buffer a connection starts with.
const INITIAL: usize = 4096;
/// A read gets at least this much room when the buffer can make it.
const MIN_READ: usize = 1024;
/// The most the buffer ever holds: a largest frame (padded) and a read's worth.
pub(crate) const MAX_INBUF: usize = MAX_FRAME_LEN.next_multiple_of(4) + INITIAL;

/// Bytes read from the stream and not yet handed out as frames.
#[derive(Debug)]
pub(crate) struct InBuf {
    /// `buf[start..end]` is read and not yet framed; the rest is room.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer of the initial size.
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; INITIAL],
            start: 0,
            end: 0,
        }
    }

    /// Room to read into, made by moving an unfinished frame to the front or, when the
    /// frame fills the buffer, by growing it (never past [`MAX_INBUF`]). Empty only if the
    /// buffer is full at its largest, which framing never lets happen.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < MIN_READ && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < MIN_READ && self.buf.len() < MAX_INBUF {
            let len = (self.buf.len() * 2).min(MAX_INBUF);
            self.buf.resize(len, 0);
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    /// `n` bytes were read into [`InBuf::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, as a range for [`InBuf::get`], and moves past it (and
    /// past a ChannelData message's padding, which is not part of the message).
    /// `Ok(None)`: wait for more bytes. `Err`: the stream is broken.
    pub(crate) fn next(&mut self) -> Result<Option<Range<usize>>, Malformed> {
        let held = self.buf.get(self.start..self.end).unwrap_or_default();
        let Some(frame) = next_frame(held)? else {
            return Ok(None);
        };
        let message = match frame {
            Frame::Stun(len) => len,
            Frame::ChannelData(_) => channel_data::parse(held)?.message_len(),
        };
        let range = self.start..self.start + message;
        self.start += frame.len();
        Ok(Some(range))
    }

    /// The bytes of a range [`InBuf::next`] gave out, until the next [`InBuf::spare`].
    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// Every byte read and not yet handed out, taken as it is (an RFC 6062 data
    /// connection carries raw bytes once bound).
    pub(crate) fn take_held(&mut self) -> &[u8] {
        let held = self.start..self.end;
        self.start = self.end;
        self.buf.get(held).unwrap_or_default()
    }

    /// Bytes read and not yet handed out.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.end - self.start
    }

    /// Puts whole frames (stream-padded) back before what waits, to be handed out first;
    /// false, changing nothing, when they do not fit [`MAX_INBUF`].
    pub(crate) fn prepend(&mut self, frames: &[u8]) -> bool {
        let held = self.end - self.start;
        if frames.len() + held > MAX_INBUF {
            return false;
        }
        let mut buf = Vec::with_capacity((frames.len() + held).max(INITIAL));
        buf.extend_from_slice(frames);
        buf.extend_from_slice(self.buf.get(self.start..self.end).unwrap_or_default());
        let end = buf.len();
        buf.resize(buf.capacity().min(MAX_INBUF).max(end), 0);
        (self.buf, self.start, self.end) = (buf, 0, end);
        true
    }

    /// Whether no bytes wait: false means a frame was begun and not finished.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = channel_data::header(channel, payload.len()).to_vec();
        m.extend_from_slice(payload);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    /// Feeds `stream` in chunks of `chunk` bytes; returns the messages framed.
    fn feed(stream: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, Malformed> {
        let mut inbuf = InBuf::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            let mut piece = piece;
            while !piece.is_empty() {
                let room = inbuf.spare();
                assert!(!room.is_empty());
                let n = room.len().min(piece.len());
                room[..n].copy_from_slice(&piece[..n]);
                inbuf.filled(n);
                piece = &piece[n..];
                while let Some(range) = inbuf.next()? {
                    got.push(inbuf.get(range).to_vec());
                }
            }
        }
        assert!(inbuf.is_empty());
        Ok(got)
    }

    #[test]
    fn frames_put_back_come_out_first_then_the_unfinished_rest() {
        let (a, b, c) = (
            channel_data(0x4000, b"one"),
            channel_data(0x4001, b"two"),
            channel_data(0x4002, b"three"),
        );
        let mut inbuf = InBuf::new();
        // Half of c has arrived.
        let half = c.len() / 2;
        inbuf.spare()[..half].copy_from_slice(&c[..half]);
        inbuf.filled(half);
        assert_eq!(inbuf.next(), Ok(None));
        assert!(inbuf.prepend(&[a.clone(), b.clone()].concat()));
        let mut got = Vec::new();
        while let Some(range) = inbuf.next().unwrap() {
            got.push(inbuf.get(range).to_vec());
        }
        assert_eq!(got, [&a[..7], &b[..7]]);
        let room = inbuf.spare();
        room[..c.len() - half].copy_from_slice(&c[half..]);
        inbuf.filled(c.len() - half);
        let range = inbuf.next().unwrap().unwrap();
        assert_eq!(inbuf.get(range), &c[..9]);
        assert!(inbuf.is_empty());
        // Too much to put back: nothing changes.
        assert!(!inbuf.prepend(&vec![0; MAX_INBUF + 1]));
        assert!(inbuf.is_empty());
    }

    #[test]
    fn frames_come_out_whole_however_the_stream_is_cut() {
        let big = vec![5u8; 60_000];
        let frames = [
            channel_data(0x4000, b"hello"),
            channel_data(0x4001, &big),
            channel_data(0x4002, b""),
            channel_data(0x4003, &[1; 1500]),
        ];
        let stream = frames.concat();
        for chunk in [1, 3, 4, 1000, 4096, 70_000] {
            let got = feed(&stream, chunk).unwrap();
            assert_eq!(got.len(), 4, "chunk {chunk}");
            // The padding is cut off: the message is its header and payload.
            assert_eq!(got[0], b"\x40\x00\x00\x05hello");
            assert_eq!(got[1].len(), 60_004);
            assert_eq!(got[2], b"\x40\x02\x00\x00");
            assert_eq!(got[3].len(), 1504);
        }
    }

    #[test]
    fn the_buffer_stays_bounded() {
        let mut inbuf = InBuf::new();
        // A largest ChannelData message, fed a byte short: the buffer grows to hold it…
        let frame = channel_data(0x4000, &vec![0; usize::from(u16::MAX)]);
        let mut fed = 0;
        while fed < frame.len() - 1 {
            let room = inbuf.spare();
            let n = room.len().min(frame.len() - 1 - fed);
            room[..n].copy_from_slice(&frame[fed..fed + n]);
            inbuf.filled(n);
            fed += n;
            assert_eq!(inbuf.next(), Ok(None));
        }
        assert!(inbuf.buf.len() <= MAX_INBUF);
        // …and still has room for the rest.
        assert!(!inbuf.spare().is_empty());
    }

    #[test]
    fn bytes_that_are_not_stun_break_the_stream() {
        let mut stream = channel_data(0x4000, b"ok");
        // RTP where a message should start.
        stream.extend_from_slice(&[0x80; 24]);
        assert_eq!(feed(&stream, 100), Err(Malformed::NotStun));
    }
}
