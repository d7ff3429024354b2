//! Untrusted datagram → STUN decoder. Whatever the bytes: no panic; a message the decoder
//! accepts re-encodes, attribute for attribute, into one it accepts again with the same
//! attributes; a Binding request gets an answer that decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::stun::Responder;
use rturn::stun::codec::{PacketKind, decode_into, packet_kind};
use stun::attributes::ATTR_FINGERPRINT;
use stun::message::{BINDING_REQUEST, Message};

fuzz_target!(|data: &[u8]| {
    let kind = packet_kind(data);
    let mut msg = Message::new();
    let Ok(()) = decode_into(data, &mut msg) else {
        return;
    };
    assert_eq!(
        kind,
        PacketKind::Stun,
        "decoded a packet that is not classified as STUN"
    );

    // Re-encode every attribute but FINGERPRINT (its CRC covers padding bytes the encoder
    // rewrites as zeros) and decode again.
    let mut again = Message::new();
    again.typ = msg.typ;
    again.transaction_id = msg.transaction_id;
    again.write_header();
    let kept: Vec<_> = (msg.attributes.0.iter())
        .filter(|a| a.typ != ATTR_FINGERPRINT)
        .collect();
    for attr in &kept {
        again.add(attr.typ, &attr.value);
    }
    let mut decoded = Message::new();
    assert_eq!(
        decode_into(&again.raw, &mut decoded),
        Ok(()),
        "re-encoded message refused"
    );
    assert_eq!(decoded.typ, msg.typ);
    assert_eq!(decoded.attributes.0.len(), kept.len());
    for (a, b) in decoded.attributes.0.iter().zip(&kept) {
        assert_eq!((a.typ, &a.value), (b.typ, &b.value));
    }

    if msg.typ == BINDING_REQUEST {
        let client = "192.0.2.1:3478".parse().expect("literal address");
        let answer = Responder::new().answer(&msg, client).to_vec();
        let mut response = Message::new();
        assert_eq!(
            decode_into(&answer, &mut response),
            Ok(()),
            "our answer does not decode"
        );
    }
});
