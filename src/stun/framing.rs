//! Framing STUN and ChannelData messages on a byte stream (TCP, later TLS).
//!
//! RFC 8489 §6.2.2 and RFC 8656 §12.5: over a stream, messages follow each other with no
//! delimiter; each says its own length. STUN messages are framed by their header length,
//! ChannelData by its 4-byte header and padded to a multiple of 4. A stream whose next bytes
//! are neither cannot be resynchronised and must be closed.

use super::codec::{HEADER_LEN, Malformed, PacketKind, message_len, packet_kind};

/// Size of a ChannelData header: channel number and length.
pub const CHANNEL_DATA_HEADER_LEN: usize = super::channel_data::HEADER_LEN;

/// One complete frame at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A STUN message of this many bytes.
    Stun(usize),
    /// A ChannelData message occupying this many bytes on the stream, padding included.
    ChannelData(usize),
}

impl Frame {
    /// Bytes this frame occupies at the start of the buffer.
    pub fn len(self) -> usize {
        match self {
            Frame::Stun(n) | Frame::ChannelData(n) => n,
        }
    }

    /// Whether the frame is empty (never: every frame has a header).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Finds the first frame in `buf`.
///
/// `Ok(None)`: the buffer holds only part of a frame; read more. `Err`: the stream is broken
/// and should be closed.
pub fn next_frame(buf: &[u8]) -> Result<Option<Frame>, Malformed> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (frame, needed) = match packet_kind(buf) {
        PacketKind::Stun => match message_len(buf)? {
            Some(len) => (Frame::Stun(len), len),
            None => return Ok(None),
        },
        PacketKind::ChannelData => {
            let Some(header) = buf.get(..CHANNEL_DATA_HEADER_LEN) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let total = (CHANNEL_DATA_HEADER_LEN + len).next_multiple_of(4);
            (Frame::ChannelData(total), total)
        }
        PacketKind::Other => return Err(Malformed::NotStun),
    };
    Ok((buf.len() >= needed).then_some(frame))
}

/// The largest frame a stream can carry: a STUN header plus a 16-bit length.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + u16::MAX as usize;

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_header(body_len: u16) -> Vec<u8> {
        let mut h = vec![0x00, 0x01];
        h.extend_from_slice(&body_len.to_be_bytes());
        h.extend_from_slice(&0x2112A442u32.to_be_bytes());
        h.extend_from_slice(&[7; 12]);
        h
    }

    #[test]
    fn stun_frames_by_header_length() {
        let mut s = stun_header(8);
        assert_eq!(next_frame(&s), Ok(None));
        s.extend_from_slice(&[0; 8]);
        assert_eq!(next_frame(&s), Ok(Some(Frame::Stun(28))));
        s.extend_from_slice(&stun_header(0));
        assert_eq!(next_frame(&s), Ok(Some(Frame::Stun(28))));
        assert_eq!(next_frame(&s[28..]), Ok(Some(Frame::Stun(20))));
    }

    #[test]
    fn channel_data_is_padded_on_streams() {
        let mut s = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5];
        assert_eq!(next_frame(&s), Ok(None), "needs its 3 padding bytes");
        s.extend_from_slice(&[0, 0, 0]);
        assert_eq!(next_frame(&s), Ok(Some(Frame::ChannelData(12))));
        assert_eq!(next_frame(&[0x40, 0x01]), Ok(None));
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert_eq!(
            next_frame(&[0x16, 3, 1, 0, 0xc8]),
            Err(Malformed::NotStun),
            "TLS"
        );
        assert_eq!(next_frame(&[0x80; 24]), Err(Malformed::NotStun), "RTP");
        let mut bad_cookie = stun_header(0);
        bad_cookie[4] = 0;
        assert_eq!(next_frame(&bad_cookie), Err(Malformed::BadCookie));
        assert_eq!(next_frame(&stun_header(3)), Err(Malformed::BadLength));
    }

    #[test]
    fn short_buffers_wait() {
        let full = stun_header(0);
        for cut in 1..full.len() {
            assert_eq!(next_frame(&full[..cut]), Ok(None), "cut at {cut}");
        }
    }

    mod properties {
        use super::*;
        use crate::stun::channel_data;
        use proptest::prelude::*;

        /// One message as a stream carries it: a STUN message (header and a body of whole
        /// words) or a ChannelData message padded to 4.
        fn frame() -> impl Strategy<Value = Vec<u8>> {
            let body = proptest::collection::vec(any::<[u8; 4]>(), 0..10);
            let stun = body.prop_map(|words| {
                let mut m = stun_header(4 * words.len() as u16);
                m.extend(words.concat());
                m
            });
            let data = proptest::collection::vec(any::<u8>(), 0..40);
            let channel = (0x4000u16..=0x7fff, data).prop_map(|(channel, payload)| {
                let mut m = channel_data::header(channel, payload.len()).to_vec();
                m.extend_from_slice(&payload);
                m.resize(m.len().next_multiple_of(4), 0);
                m
            });
            prop_oneof![stun, channel]
        }

        proptest! {
            /// Frames sent back to back and received in chunks cut anywhere come out as the
            /// same frames, whatever the cuts.
            #[test]
            fn concatenated_frames_split_back_at_any_cuts(
                frames in proptest::collection::vec(frame(), 1..8),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let stream = frames.concat();
                let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
                cuts.push(stream.len());
                cuts.sort_unstable();
                let (mut buf, mut got, mut fed) = (Vec::new(), Vec::new(), 0);
                for cut in cuts {
                    buf.extend_from_slice(&stream[fed..cut]);
                    fed = cut;
                    while let Some(frame) = next_frame(&buf).unwrap() {
                        if let Frame::ChannelData(len) = frame {
                            let cd = channel_data::parse(&buf[..len]).unwrap();
                            prop_assert_eq!(cd.message_len().next_multiple_of(4), len);
                        }
                        got.push(buf.drain(..frame.len()).collect::<Vec<u8>>());
                    }
                }
                prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
                prop_assert_eq!(got, frames);
            }
        }
    }
}
