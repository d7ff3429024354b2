//! Untrusted bytes → ChannelData parser (the one the UDP and TCP data paths call). Whatever
//! the bytes: no panic; a parsed message lies inside the buffer, its payload is exactly the
//! announced bytes and its header re-encodes to the same four bytes; the stream framer and
//! the parser agree (a ChannelData frame always parses, and is the message padded to 4).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::stun::channel_data::{self, HEADER_LEN};
use rturn::stun::codec::{PacketKind, packet_kind};
use rturn::stun::{Frame, Malformed, next_frame};

fuzz_target!(|data: &[u8]| {
    match channel_data::parse(data) {
        Ok(cd) => {
            assert_eq!(packet_kind(data), PacketKind::ChannelData);
            let len = cd.message_len();
            assert!(len <= data.len(), "{len} > {}", data.len());
            assert_eq!(cd.payload, &data[HEADER_LEN..len]);
            assert_eq!(
                channel_data::header(cd.channel, cd.payload.len()),
                data[..HEADER_LEN]
            );
            // Re-encoded, it parses to the same message.
            let mut again = channel_data::header(cd.channel, cd.payload.len()).to_vec();
            again.extend_from_slice(cd.payload);
            assert_eq!(channel_data::parse(&again), Ok(cd));
        }
        Err(Malformed::NotStun) => assert_ne!(packet_kind(data), PacketKind::ChannelData),
        Err(Malformed::Truncated) => assert!(data.len() < HEADER_LEN),
        Err(Malformed::BadLength) => assert!(data.len() >= HEADER_LEN),
        Err(other) => panic!("ChannelData cannot be {other:?}"),
    }

    // The TCP reader's steps: frame the stream, then parse each ChannelData frame.
    let mut rest = data;
    while let Ok(Some(frame)) = next_frame(rest) {
        assert!(frame.len() <= rest.len());
        if let Frame::ChannelData(n) = frame {
            let cd = channel_data::parse(&rest[..n]).expect("a framed ChannelData parses");
            assert_eq!(cd.message_len().next_multiple_of(4), n);
        }
        rest = &rest[frame.len()..];
    }
});
