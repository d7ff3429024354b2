//! Checking and decoding STUN messages from untrusted bytes (RFC 8489 §5, §14).
//!
//! The `stun` crate does the decoding; this module checks the framing first, so that every
//! byte the crate indexes is known to be there and every way a packet can be wrong has a name
//! ([`Malformed`]) that the server counts.

use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, AttrType,
};
use stun::message::{MAGIC_COOKIE, Message};

/// Size of the STUN header: type, length, magic cookie, transaction ID.
pub const HEADER_LEN: usize = 20;
/// Size of an attribute header: type and length.
const ATTR_HEADER_LEN: usize = 4;

/// XORed into the CRC-32 of a message to make its FINGERPRINT (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The FINGERPRINT value for `bytes`: the message up to (not including) the FINGERPRINT
/// attribute, with a header length that already counts it. `crc32fast` uses the CPU's
/// carry-less multiply; the `stun` crate's table-driven CRC was the largest user-space cost
/// of a relayed Send indication.
pub fn fingerprint(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

/// Appends FINGERPRINT to `msg` as its last attribute.
pub fn add_fingerprint(msg: &mut Message) {
    let body = msg.length;
    msg.length += (ATTR_HEADER_LEN + 4) as u32;
    msg.write_length();
    let value = fingerprint(&msg.raw);
    msg.length = body;
    msg.add(ATTR_FINGERPRINT, &value.to_be_bytes());
}

/// What the first byte of a packet says it is (RFC 7983 §7 demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// A STUN message: the two top bits are zero.
    Stun,
    /// A TURN ChannelData message: channel numbers 0x4000–0x7FFF. RFC 8656 §12 narrowed
    /// channels to 0x4000–0x4FFF, but RFC 5766 clients (coturn's own among them) still pick
    /// numbers up to 0x7FFF, and coturn accepts them; so do we. No other protocol WebRTC
    /// multiplexes on a TURN socket starts with those bytes (RFC 7983 §7).
    ChannelData,
    /// Anything else.
    Other,
}

/// Classifies a packet by its first byte.
pub fn packet_kind(packet: &[u8]) -> PacketKind {
    match packet.first() {
        Some(0x00..=0x03) => PacketKind::Stun,
        Some(0x40..=0x7F) => PacketKind::ChannelData,
        _ => PacketKind::Other,
    }
}

/// Why a packet was not a usable STUN message. Each one is counted, none is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than a STUN header.
    #[error("shorter than a STUN header")]
    Truncated,
    /// Neither STUN nor ChannelData by its first byte.
    #[error("not a STUN or ChannelData packet")]
    NotStun,
    /// The magic cookie is not 0x2112A442.
    #[error("wrong magic cookie")]
    BadCookie,
    /// The length field is not a multiple of 4 or disagrees with the bytes received.
    #[error("length field disagrees with the packet")]
    BadLength,
    /// An attribute runs past the end of the message.
    #[error("attribute overruns the message")]
    BadAttribute,
    /// FINGERPRINT is not the last attribute, has the wrong size or the wrong CRC.
    #[error("bad FINGERPRINT")]
    BadFingerprint,
}

/// Checks a STUN header and returns the full message length it announces (header included).
///
/// `Ok(None)` means fewer than [`HEADER_LEN`] bytes are available yet (a TCP stream may
/// still deliver them); a datagram caller treats that as [`Malformed::Truncated`].
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    if packet_kind(buf) != PacketKind::Stun && !buf.is_empty() {
        return Err(Malformed::NotStun);
    }
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let body_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
        return Err(Malformed::BadCookie);
    }
    if body_len % 4 != 0 {
        return Err(Malformed::BadLength);
    }
    Ok(Some(HEADER_LEN + body_len))
}

/// Checks that `packet` is exactly one well-formed STUN message and decodes it into `msg`,
/// reusing `msg`'s buffers.
///
/// Beyond what the `stun` crate checks: the length field must match the packet exactly,
/// attributes must tile the body, and FINGERPRINT, when present, must be last and correct
/// (RFC 8489 §14.7). Attributes after an integrity attribute are dropped from
/// `msg.attributes` ([`ignore_after_integrity`]); `msg.raw` keeps every byte.
pub fn decode_into(packet: &[u8], msg: &mut Message) -> Result<(), Malformed> {
    match message_len(packet)? {
        None => return Err(Malformed::Truncated),
        Some(len) if len != packet.len() => return Err(Malformed::BadLength),
        Some(_) => {}
    }
    let fingerprint_at = check_attributes(&packet[HEADER_LEN..])?;
    msg.raw.clear();
    msg.raw.extend_from_slice(packet);
    msg.decode().map_err(|_| Malformed::BadAttribute)?;
    if let Some(at) = fingerprint_at {
        let value_at = HEADER_LEN + at + ATTR_HEADER_LEN;
        let carried = packet
            .get(value_at..)
            .and_then(|v| <[u8; 4]>::try_from(v).ok());
        if carried.is_none_or(|v| u32::from_be_bytes(v) != fingerprint(&packet[..value_at - 4])) {
            return Err(Malformed::BadFingerprint);
        }
    }
    ignore_after_integrity(msg);
    Ok(())
}

/// RFC 8489 §14.5 and §14.6: the MAC covers only what precedes it, so nothing after it may
/// count. After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are kept;
/// after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT. Everything else that follows is removed
/// from the decoded attribute list, so no handler can act on what an on-path attacker
/// appended to a signed request (a second XOR-PEER-ADDRESS, LIFETIME=0, …).
pub fn ignore_after_integrity(msg: &mut Message) {
    let mut seen_sha1 = false;
    let mut seen_sha256 = false;
    msg.attributes.0.retain(|attr| {
        let keep = if seen_sha256 {
            attr.typ == ATTR_FINGERPRINT
        } else if seen_sha1 {
            attr.typ == ATTR_FINGERPRINT || attr.typ == ATTR_MESSAGE_INTEGRITY_SHA256
        } else {
            true
        };
        if keep {
            seen_sha1 |= attr.typ == ATTR_MESSAGE_INTEGRITY;
            seen_sha256 |= attr.typ == ATTR_MESSAGE_INTEGRITY_SHA256;
        }
        keep
    });
}

/// Walks the attribute list; returns the body offset of FINGERPRINT if there is one.
fn check_attributes(body: &[u8]) -> Result<Option<usize>, Malformed> {
    let mut offset = 0;
    let mut fingerprint_at = None;
    while offset < body.len() {
        let header = body
            .get(offset..offset + ATTR_HEADER_LEN)
            .ok_or(Malformed::BadAttribute)?;
        let typ = AttrType(u16::from_be_bytes([header[0], header[1]]));
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let padded = len.next_multiple_of(4);
        if offset + ATTR_HEADER_LEN + padded > body.len() {
            return Err(Malformed::BadAttribute);
        }
        if typ == ATTR_FINGERPRINT && fingerprint_at.is_none() {
            fingerprint_at = Some(offset);
        }
        offset += ATTR_HEADER_LEN + padded;
    }
    Ok(fingerprint_at)
}

/// Collects into `unknown` the comprehension-required attribute types (RFC 8489 §14) in
/// `msg` that are not in `known`, each once.
pub fn unknown_required(msg: &Message, known: &[AttrType], unknown: &mut Vec<AttrType>) {
    unknown.clear();
    for attr in &msg.attributes.0 {
        if attr.typ.required() && !known.contains(&attr.typ) && !unknown.contains(&attr.typ) {
            unknown.push(attr.typ);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::fingerprint::FINGERPRINT;
    use stun::message::{BINDING_REQUEST, Setter};
    use stun::textattrs::TextAttribute;

    #[test]
    fn our_fingerprint_is_the_one_the_stun_crate_checks() {
        for payload in [&b""[..], b"x", &[7u8; 1200][..]] {
            let mut m = Message::new();
            m.build(&[Box::new(BINDING_REQUEST)]).unwrap();
            m.add(stun::attributes::ATTR_DATA, payload);
            add_fingerprint(&mut m);
            assert!(
                FINGERPRINT.check(&m).is_ok(),
                "payload of {}",
                payload.len()
            );
            let mut decoded = Message::new();
            assert_eq!(decode_into(&m.raw, &mut decoded), Ok(()));
        }
    }

    fn request(with_fingerprint: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        TextAttribute::new(stun::attributes::ATTR_SOFTWARE, "x".into())
            .add_to(&mut m)
            .unwrap();
        if with_fingerprint {
            FINGERPRINT.add_to(&mut m).unwrap();
        }
        m.raw
    }

    #[test]
    fn kinds_by_first_byte() {
        assert_eq!(packet_kind(&[0x00, 1]), PacketKind::Stun);
        assert_eq!(packet_kind(&[0x40, 0]), PacketKind::ChannelData);
        assert_eq!(packet_kind(&[0x7F]), PacketKind::ChannelData);
        assert_eq!(packet_kind(&[0x80]), PacketKind::Other); // RTP
        assert_eq!(packet_kind(&[0x16]), PacketKind::Other); // TLS handshake
        assert_eq!(packet_kind(&[]), PacketKind::Other);
    }

    #[test]
    fn well_formed_request_decodes() {
        let mut m = Message::new();
        decode_into(&request(true), &mut m).unwrap();
        assert_eq!(m.typ, BINDING_REQUEST);
        decode_into(&request(false), &mut m).unwrap();
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let full = request(true);
        let mut m = Message::new();
        for cut in 0..full.len() {
            assert!(decode_into(&full[..cut], &mut m).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lying_length_fields_are_rejected() {
        let mut m = Message::new();
        let mut p = request(false);
        p[3] = p[3].wrapping_add(4); // says longer than it is
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadLength));
        let mut p = request(false);
        p[3] = p[3].wrapping_add(1); // not a multiple of 4
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadLength));
        let mut p = request(false);
        p[22] = 0xff; // attribute length runs past the body
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadAttribute));
        let mut p = request(false);
        p.extend_from_slice(&[0; 4]); // trailing bytes
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadLength));
    }

    #[test]
    fn bad_cookie_and_fingerprint_are_rejected() {
        let mut m = Message::new();
        let mut p = request(true);
        p[4] ^= 1;
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadCookie));
        let mut p = request(true);
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(decode_into(&p, &mut m), Err(Malformed::BadFingerprint));
    }

    #[test]
    fn fingerprint_must_be_last() {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        FINGERPRINT.add_to(&mut m).unwrap();
        TextAttribute::new(stun::attributes::ATTR_SOFTWARE, "x".into())
            .add_to(&mut m)
            .unwrap();
        let mut out = Message::new();
        assert_eq!(
            decode_into(&m.raw, &mut out),
            Err(Malformed::BadFingerprint)
        );
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        use stun::attributes::{ATTR_LIFETIME, ATTR_SOFTWARE, ATTR_USERNAME};
        let mut m = Message::new();
        m.build(&[Box::new(BINDING_REQUEST)]).unwrap();
        m.add(ATTR_USERNAME, b"user");
        m.add(ATTR_MESSAGE_INTEGRITY, &[1; 20]);
        m.add(ATTR_LIFETIME, &[0; 4]);
        m.add(ATTR_MESSAGE_INTEGRITY_SHA256, &[2; 32]);
        m.add(ATTR_SOFTWARE, b"appended");
        m.add(ATTR_MESSAGE_INTEGRITY, &[3; 20]);
        FINGERPRINT.add_to(&mut m).unwrap();
        let mut out = Message::new();
        decode_into(&m.raw, &mut out).unwrap();
        let types: Vec<AttrType> = out.attributes.0.iter().map(|a| a.typ).collect();
        assert_eq!(
            types,
            [
                ATTR_USERNAME,
                ATTR_MESSAGE_INTEGRITY,
                ATTR_MESSAGE_INTEGRITY_SHA256,
                ATTR_FINGERPRINT
            ]
        );
        assert!(out.get(ATTR_LIFETIME).is_err());
        // The raw bytes are untouched: the MACs are checked over them.
        assert_eq!(out.raw, m.raw);

        // MESSAGE-INTEGRITY-SHA256 alone: only FINGERPRINT may follow it.
        let mut m = Message::new();
        m.build(&[Box::new(BINDING_REQUEST)]).unwrap();
        m.add(ATTR_MESSAGE_INTEGRITY_SHA256, &[2; 32]);
        m.add(ATTR_MESSAGE_INTEGRITY, &[1; 20]);
        m.add(ATTR_LIFETIME, &[0; 4]);
        decode_into(&m.raw, &mut out).unwrap();
        assert_eq!(out.attributes.0.len(), 1);
    }

    #[test]
    fn message_len_waits_for_a_header() {
        let p = request(true);
        assert_eq!(message_len(&p[..10]), Ok(None));
        assert_eq!(message_len(&p), Ok(Some(p.len())));
        assert_eq!(message_len(&[0x80; 20]), Err(Malformed::NotStun));
    }

    mod properties {
        use super::super::*;
        use crate::stun::framing::next_frame;
        use proptest::prelude::*;
        use stun::message::BINDING_REQUEST;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let mut m = Message::new();
                let _ = decode_into(&bytes, &mut m);
                let _ = next_frame(&bytes);
            }

            #[test]
            fn encoded_messages_decode_to_the_same_attributes(
                attrs in proptest::collection::vec(
                    (
                        // The stun crate reads legacy 0x8020 as XOR-MAPPED-ADDRESS 0x0020.
                        (0x8000u16..0xffff).prop_filter("legacy alias", |t| *t != 0x8020),
                        proptest::collection::vec(any::<u8>(), 0..40),
                    ),
                    0..8,
                ),
                fingerprint in any::<bool>(),
            ) {
                let mut sent = Message::new();
                sent.typ = BINDING_REQUEST;
                sent.new_transaction_id().unwrap();
                sent.write_header();
                for (typ, value) in &attrs {
                    if AttrType(*typ) != ATTR_FINGERPRINT {
                        sent.add(AttrType(*typ), value);
                    }
                }
                if fingerprint {
                    stun::message::Setter::add_to(&stun::fingerprint::FINGERPRINT, &mut sent).unwrap();
                }
                let mut got = Message::new();
                decode_into(&sent.raw, &mut got).unwrap();
                prop_assert_eq!(got.typ, sent.typ);
                prop_assert_eq!(got.transaction_id, sent.transaction_id);
                prop_assert_eq!(&got.attributes, &sent.attributes);
                prop_assert_eq!(next_frame(&sent.raw), Ok(Some(crate::stun::Frame::Stun(sent.raw.len()))));
            }
        }
    }
}
