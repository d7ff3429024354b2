//! ChannelData messages (RFC 8656 §12.4): a 4-byte header (channel number, payload length)
//! and the payload. Pure, and cheap enough for the data path: no allocation, no copy, the
//! payload is a slice of the received buffer.
//!
//! Over UDP the payload may be followed by padding or nothing (§12.5: the padding is only
//! required on streams); [`parse`] ignores whatever follows the announced length, and a
//! stream reader finds the padded frame length with [`crate::stun::next_frame`].

use super::codec::{Malformed, PacketKind, packet_kind};

/// Size of a ChannelData header: channel number and length.
pub const HEADER_LEN: usize = 4;

/// A ChannelData message borrowed from the buffer it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number (0x4000–0x7FFF: [`PacketKind::ChannelData`]).
    pub channel: u16,
    /// The application data, exactly as many bytes as the header announced.
    pub payload: &'a [u8],
}

impl ChannelData<'_> {
    /// Bytes of the message without padding: header and payload.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Reads the ChannelData message at the start of `packet`.
///
/// [`Malformed::NotStun`] if the first byte is not a channel number, [`Malformed::Truncated`]
/// if the header is cut short, [`Malformed::BadLength`] if the payload is shorter than the
/// header says. Bytes after the payload (padding) are not part of the message.
#[inline]
pub fn parse(packet: &[u8]) -> Result<ChannelData<'_>, Malformed> {
    if packet_kind(packet) != PacketKind::ChannelData {
        return Err(Malformed::NotStun);
    }
    let Some(([c0, c1, l0, l1], rest)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(Malformed::Truncated);
    };
    let payload = rest
        .get(..usize::from(u16::from_be_bytes([*l0, *l1])))
        .ok_or(Malformed::BadLength)?;
    Ok(ChannelData {
        channel: u16::from_be_bytes([*c0, *c1]),
        payload,
    })
}

/// The header of a ChannelData message carrying `payload_len` bytes on `channel`. A payload
/// longer than 65535 bytes cannot be framed; its length is announced as 65535 (the caller
/// relays datagrams, which are never longer).
#[inline]
pub fn header(channel: u16, payload_len: usize) -> [u8; HEADER_LEN] {
    let [c0, c1] = channel.to_be_bytes();
    let [l0, l1] = u16::try_from(payload_len).unwrap_or(u16::MAX).to_be_bytes();
    [c0, c1, l0, l1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_header_and_payload_and_ignores_padding() {
        let packet = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
        let cd = parse(&packet).unwrap();
        assert_eq!((cd.channel, cd.payload), (0x4001, &b"abc"[..]));
        assert_eq!(cd.message_len(), 7);
        let empty = parse(&[0x7f, 0xff, 0, 0]).unwrap();
        assert_eq!((empty.channel, empty.payload), (0x7fff, &b""[..]));
    }

    #[test]
    fn short_or_foreign_packets_are_refused() {
        assert_eq!(parse(&[]), Err(Malformed::NotStun));
        assert_eq!(parse(&[0x00, 0x01, 0, 0]), Err(Malformed::NotStun));
        assert_eq!(parse(&[0x80, 0x01, 0, 0]), Err(Malformed::NotStun));
        for cut in 1..HEADER_LEN {
            let packet = [0x40, 0x00, 0x00, 0x00];
            assert_eq!(parse(&packet[..cut]), Err(Malformed::Truncated), "{cut}");
        }
        assert_eq!(
            parse(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4]),
            Err(Malformed::BadLength)
        );
        assert_eq!(parse(&[0x40, 0x00, 0xff, 0xff]), Err(Malformed::BadLength));
    }

    #[test]
    fn header_saturates_past_u16() {
        assert_eq!(header(0x4000, 70_000), [0x40, 0x00, 0xff, 0xff]);
        assert_eq!(header(0x4abc, 0x0102), [0x4a, 0xbc, 0x01, 0x02]);
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            channel in 0x4000u16..=0x7fff,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            padding in 0usize..4,
        ) {
            let mut packet = header(channel, payload.len()).to_vec();
            packet.extend_from_slice(&payload);
            packet.extend(std::iter::repeat_n(0, padding));
            let cd = parse(&packet).unwrap();
            prop_assert_eq!(cd.channel, channel);
            prop_assert_eq!(cd.payload, &payload[..]);
            prop_assert_eq!(cd.message_len(), HEADER_LEN + payload.len());
            // Any cut into the payload is refused, never read past.
            if !payload.is_empty() {
                prop_assert_eq!(parse(&packet[..cd.message_len() - 1]), Err(Malformed::BadLength));
            }
        }

        #[test]
        fn arbitrary_bytes_parse_inside_the_buffer(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(cd) = parse(&bytes) {
                prop_assert!(cd.message_len() <= bytes.len());
                prop_assert_eq!(&bytes[HEADER_LEN..cd.message_len()], cd.payload);
                prop_assert_eq!(&header(cd.channel, cd.payload.len())[..], &bytes[..HEADER_LEN]);
            }
        }
    }
}
