//! RFC 5769 test vectors: the IETF's sample STUN messages, as hex literals, decoded through
//! our codec and verified with their FINGERPRINT and MESSAGE-INTEGRITY.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_SOFTWARE, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message};
use stun::xoraddr::XorMappedAddress;

use super::binding::{Outcome, Responder};
use super::codec::decode_into;

/// RFC 5769 §2.1: Binding request with short-term credentials and FINGERPRINT.
const SAMPLE_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// RFC 5769 §2.2: Binding success response, IPv4 mapped address.
const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// RFC 5769 §2.3: Binding success response, IPv6 mapped address.
const SAMPLE_IPV6_RESPONSE: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

/// RFC 5769 §2.4: request with long-term credentials (no FINGERPRINT).
const SAMPLE_LONG_TERM_REQUEST: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn decode(text: &str) -> Message {
    let mut m = Message::new();
    decode_into(&hex(text), &mut m).unwrap();
    m
}

fn text(m: &Message, attr: stun::attributes::AttrType) -> String {
    String::from_utf8(m.get(attr).unwrap()).unwrap()
}

fn mapped(m: &Message) -> SocketAddr {
    let mut a = XorMappedAddress::default();
    a.get_from(m).unwrap();
    SocketAddr::new(a.ip, a.port)
}

#[test]
fn sample_request() {
    let mut m = decode(SAMPLE_REQUEST);
    assert_eq!(m.typ, BINDING_REQUEST);
    assert_eq!(text(&m, ATTR_SOFTWARE), "STUN test client");
    assert_eq!(text(&m, ATTR_USERNAME), "evtj:h6vY");
    MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into())
        .check(&mut m)
        .unwrap();
    assert!(
        MessageIntegrity::new_short_term_integrity("wrong".into())
            .check(&mut m)
            .is_err()
    );
}

#[test]
fn sample_ipv4_response() {
    let mut m = decode(SAMPLE_IPV4_RESPONSE);
    assert_eq!(m.typ, BINDING_SUCCESS);
    assert_eq!(text(&m, ATTR_SOFTWARE), "test vector");
    assert_eq!(mapped(&m), "192.0.2.1:32853".parse().unwrap());
    MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into())
        .check(&mut m)
        .unwrap();
}

#[test]
fn sample_ipv6_response() {
    let mut m = decode(SAMPLE_IPV6_RESPONSE);
    let ip: Ipv6Addr = "2001:db8:1234:5678:11:2233:4455:6677".parse().unwrap();
    assert_eq!(mapped(&m), SocketAddr::new(IpAddr::V6(ip), 32853));
    MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into())
        .check(&mut m)
        .unwrap();
}

#[test]
fn sample_long_term_request() {
    let mut m = decode(SAMPLE_LONG_TERM_REQUEST);
    let user = text(&m, ATTR_USERNAME);
    assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
    assert_eq!(text(&m, ATTR_REALM), "example.org");
    assert_eq!(text(&m, ATTR_NONCE), "f//499k954d6OL34oL9FSTvy64sA");
    // The password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
    MessageIntegrity::new_long_term_integrity(user, "example.org".into(), "TheMatrIX".into())
        .check(&mut m)
        .unwrap();
}

#[test]
fn every_sample_survives_every_truncation_and_bit_flip() {
    let mut m = Message::new();
    for sample in [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE] {
        let bytes = hex(sample);
        for cut in 0..bytes.len() {
            assert!(decode_into(&bytes[..cut], &mut m).is_err());
        }
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            // Never a panic. A flip that rewrites a length or FINGERPRINT's own type can still
            // yield a well-formed message; one in the transaction ID or the SOFTWARE text
            // (bytes 8..20 and 24..35) must be caught by the CRC.
            let result = decode_into(&flipped, &mut m);
            let byte = i / 8;
            if (8..20).contains(&byte) || (24..35).contains(&byte) {
                assert!(result.is_err(), "bit {i} flipped and still accepted");
            }
        }
    }
}

#[test]
fn responder_answers_the_sample_request() {
    let source: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    let mut responder = Responder::new();
    let Outcome::Reply(reply) = responder.handle(&hex(SAMPLE_REQUEST), source) else {
        panic!("no reply");
    };
    let m = {
        let mut m = Message::new();
        decode_into(reply, &mut m).expect("our reply must pass our own checks");
        m
    };
    assert_eq!(m.typ, BINDING_SUCCESS);
    assert_eq!(m.transaction_id.0, hex(SAMPLE_REQUEST)[8..20]);
    assert_eq!(mapped(&m), source);
    assert!(m.contains(stun::attributes::ATTR_FINGERPRINT));
    assert!(!m.contains(ATTR_SOFTWARE), "no SOFTWARE by default");
}
