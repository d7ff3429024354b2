//! The client against the server's own codec: what it builds decodes with
//! [`crate::stun::codec::decode_into`] and verifies with [`crate::auth::verify_integrity`];
//! what a server sends (built here with the `stun` crate, or by the Binding responder) reads
//! back as the values that went in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_EVEN_PORT, ATTR_FINGERPRINT, ATTR_LIFETIME,
    ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_REALM,
    ATTR_REQUESTED_TRANSPORT, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS,
    AttrType,
};
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_BINDING, METHOD_DATA, METHOD_SEND, Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

use super::*;
use crate::auth::{Integrity, long_term_key, verify_integrity};
use crate::stun::codec::decode_into;
use crate::stun::{Outcome, Responder};
use crate::turn::attrs::{ATTR_ADDITIONAL_ADDRESS_FAMILY, decode_xor_address};

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 5000);
const RELAY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 50000);
const RELAY_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
    50002,
);
const ID: TransactionId = TransactionId([7; 12]);

fn decode(raw: &[u8]) -> Message {
    let mut m = Message::new();
    decode_into(raw, &mut m).expect("the server's decoder accepts it");
    m
}

fn types(m: &Message) -> Vec<AttrType> {
    m.attributes.0.iter().map(|a| a.typ).collect()
}

/// A response of `class` to an Allocate with ID [`ID`], with `attrs`.
fn response(class: stun::message::MessageClass, attrs: &[&dyn Setter]) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = MessageType::new(METHOD_ALLOCATE, class);
    m.transaction_id = ID;
    m.write_header();
    for a in attrs {
        a.add_to(&mut m).expect("attribute encodes");
    }
    FINGERPRINT.add_to(&mut m).expect("fingerprint");
    m.raw
}

fn error(code: u16) -> ErrorCodeAttribute {
    ErrorCodeAttribute {
        code: ErrorCode(code),
        reason: b"reason".to_vec(),
    }
}

fn text(typ: AttrType, s: &str) -> TextAttribute {
    TextAttribute::new(typ, s.to_owned())
}

#[test]
fn unsigned_allocate_round_trips_through_the_server_decoder() {
    let m = Client::new("alice", "pw")
        .request_with_id(&Request::allocate().lifetime(600), ID)
        .expect("builds");
    let back = decode(&m.raw);
    assert_eq!(back.typ, MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
    assert_eq!(back.transaction_id, ID);
    assert_eq!(
        types(&back),
        [ATTR_REQUESTED_TRANSPORT, ATTR_LIFETIME, ATTR_FINGERPRINT]
    );
    assert_eq!(
        back.get(ATTR_REQUESTED_TRANSPORT).expect("transport"),
        [17, 0, 0, 0]
    );
    assert_eq!(
        back.get(ATTR_LIFETIME).expect("lifetime"),
        600u32.to_be_bytes()
    );
}

#[test]
fn signed_requests_verify_with_the_long_term_key() {
    for integrity in [Integrity::Sha1, Integrity::Sha256] {
        let mut c = Client::new("alice", "pw").signing_with(integrity);
        c.set_session("example.org", "n0nce");
        let m = c
            .request_with_id(&Request::channel_bind(0x4001, PEER), ID)
            .expect("builds");
        let back = decode(&m.raw);
        let mac = match integrity {
            Integrity::Sha1 => ATTR_MESSAGE_INTEGRITY,
            Integrity::Sha256 => ATTR_MESSAGE_INTEGRITY_SHA256,
        };
        assert_eq!(
            types(&back),
            [
                ATTR_CHANNEL_NUMBER,
                ATTR_XOR_PEER_ADDRESS,
                ATTR_USERNAME,
                ATTR_REALM,
                ATTR_NONCE,
                mac,
                ATTR_FINGERPRINT
            ]
        );
        let key = long_term_key("alice", "example.org", "pw");
        assert_eq!(verify_integrity(&back, &key).expect("verifies"), integrity);
        let wrong = long_term_key("alice", "example.org", "other");
        assert!(verify_integrity(&back, &wrong).is_err());
        let peer = back.get(ATTR_XOR_PEER_ADDRESS).expect("peer");
        assert_eq!(decode_xor_address(&peer, &ID.0), Some(PEER));
        assert_eq!(back.get(ATTR_CHANNEL_NUMBER).expect("ch"), [0x40, 1, 0, 0]);
    }
}

#[test]
fn binding_and_indications_are_never_signed() {
    let mut c = Client::new("alice", "pw");
    c.set_session("example.org", "n0nce");
    let binding = decode(&c.request(&Request::binding()).expect("builds").raw);
    assert_eq!(binding.typ, MessageType::new(METHOD_BINDING, CLASS_REQUEST));
    assert_eq!(types(&binding), [ATTR_FINGERPRINT]);
    let send = decode(&c.request(&Request::send(PEER, b"hi")).expect("builds").raw);
    assert_eq!(send.typ, MessageType::new(METHOD_SEND, CLASS_INDICATION));
    assert_eq!(
        types(&send),
        [ATTR_XOR_PEER_ADDRESS, ATTR_DATA, ATTR_FINGERPRINT]
    );
    assert_eq!(send.get(ATTR_DATA).expect("data"), b"hi");
}

#[test]
fn optional_attributes_go_in_order_and_fingerprint_can_be_left_out() {
    let req = Request::allocate()
        .even_port(true)
        .additional_family(2)
        .dont_fragment()
        .text(ATTR_USERNAME, "alice")
        .without_fingerprint();
    let back = decode(&req.build(ID, None).expect("builds").raw);
    assert_eq!(
        types(&back),
        [
            ATTR_REQUESTED_TRANSPORT,
            ATTR_EVEN_PORT,
            ATTR_ADDITIONAL_ADDRESS_FAMILY,
            stun::attributes::ATTR_DONT_FRAGMENT,
            ATTR_USERNAME
        ]
    );
    assert_eq!(back.get(ATTR_EVEN_PORT).expect("even"), [0x80]);
    let user = TextAttribute::get_from_as(&back, ATTR_USERNAME).expect("USERNAME");
    assert_eq!(user.text, "alice");
}

#[test]
fn a_401_sets_the_session_and_the_same_challenge_twice_is_a_refusal() {
    let mut c = Client::new("alice", "pw");
    assert!(c.session().is_none());
    let challenge = response(
        CLASS_ERROR_RESPONSE,
        &[
            &error(401),
            &text(ATTR_REALM, "example.org"),
            &text(ATTR_NONCE, "n1"),
        ],
    );
    let r = Response::parse(&challenge).expect("parses");
    assert_eq!(r.error_code(), Some(401));
    assert!(
        c.handle_challenge(&r),
        "the first challenge is worth a retry"
    );
    let s = c.session().expect("a session");
    assert_eq!(
        (s.username(), s.realm(), s.nonce()),
        ("alice", "example.org", "n1")
    );
    assert_eq!(*s.key(), long_term_key("alice", "example.org", "pw"));
    assert!(
        !c.handle_challenge(&r),
        "same realm and nonce: the password is wrong"
    );

    // A 438 without REALM keeps the realm and takes the nonce.
    let stale = response(
        CLASS_ERROR_RESPONSE,
        &[&error(438), &text(ATTR_NONCE, "n2")],
    );
    assert!(c.handle_challenge(&Response::parse(&stale).expect("parses")));
    assert_eq!(c.session().expect("session").nonce(), "n2");

    // Other errors and successes teach nothing.
    let forbidden = response(
        CLASS_ERROR_RESPONSE,
        &[&error(403), &text(ATTR_NONCE, "n3")],
    );
    assert!(!c.handle_challenge(&Response::parse(&forbidden).expect("parses")));
    assert_eq!(c.session().expect("session").nonce(), "n2");
}

#[test]
fn a_success_reads_relayed_addresses_mapped_address_and_lifetime() {
    let relay = XorMappedAddress {
        ip: RELAY.ip(),
        port: RELAY.port(),
    };
    let relay_v6 = XorMappedAddress {
        ip: RELAY_V6.ip(),
        port: RELAY_V6.port(),
    };
    let mut m = Message::new();
    m.typ = MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE);
    m.transaction_id = ID;
    m.write_header();
    relay
        .add_to_as(&mut m, ATTR_XOR_RELAYED_ADDRESS)
        .expect("v4");
    relay_v6
        .add_to_as(&mut m, ATTR_XOR_RELAYED_ADDRESS)
        .expect("v6");
    XorMappedAddress {
        ip: PEER.ip(),
        port: PEER.port(),
    }
    .add_to(&mut m)
    .expect("mapped");
    m.add(ATTR_LIFETIME, &600u32.to_be_bytes());
    FINGERPRINT.add_to(&mut m).expect("fingerprint");

    let r = Response::parse(&m.raw).expect("parses");
    assert!(r.is_success());
    assert_eq!(r.code(), 0);
    assert_eq!((r.method, r.transaction_id), (METHOD_ALLOCATE, ID));
    assert_eq!(r.relayed, [RELAY, RELAY_V6]);
    assert_eq!(r.relayed_address(), Some(RELAY));
    assert_eq!(r.mapped, Some(PEER));
    assert_eq!(r.lifetime, Some(600));
}

#[test]
fn the_binding_responder_answers_what_the_client_builds() {
    let req = Client::new("alice", "pw")
        .request(&Request::binding())
        .expect("builds");
    let mut responder = Responder::new();
    let Outcome::Reply(reply) = responder.handle(&req.raw, PEER) else {
        panic!("a Binding request is answered");
    };
    let r = Response::parse(reply).expect("parses");
    assert_eq!(r.transaction_id, req.transaction_id);
    assert_eq!(r.method, METHOD_BINDING);
    assert_eq!(r.mapped, Some(PEER));
}

#[test]
fn requests_and_garbage_are_not_responses() {
    let req = Request::allocate().build(ID, None).expect("builds");
    assert_eq!(
        Response::parse(&req.raw),
        Err(ClientError::NotResponse("not a response"))
    );
    let no_code = response(CLASS_ERROR_RESPONSE, &[]);
    assert!(matches!(
        Response::parse(&no_code),
        Err(ClientError::NotResponse(_))
    ));
    for junk in [&[][..], &[0, 1], &[0xff; 24], &req.raw[..req.raw.len() - 1]] {
        assert!(Response::parse(junk).is_err(), "{junk:?}");
        assert!(parse_inbound(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn channel_data_frames_and_parses_back() {
    let frame = channel_data(0x4001, b"hello").expect("short");
    assert_eq!(frame, [0x40, 0x01, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(
        parse_inbound(&frame),
        Ok(Inbound::ChannelData {
            channel: 0x4001,
            data: b"hello".to_vec()
        })
    );
    let mut padded = Vec::new();
    data::channel_data_into(&mut padded, 0x4001, b"hello", true).expect("short");
    assert_eq!(padded.len(), 12);
    assert_eq!(
        parse_inbound(&padded),
        Ok(Inbound::ChannelData {
            channel: 0x4001,
            data: b"hello".to_vec()
        })
    );
    assert_eq!(
        channel_data(0x4001, &vec![0; 65536]),
        Err(ClientError::TooLong)
    );
}

#[test]
fn a_data_indication_reads_as_peer_and_data() {
    let mut m = Message::new();
    m.typ = MessageType::new(METHOD_DATA, CLASS_INDICATION);
    m.transaction_id = ID;
    m.write_header();
    XorMappedAddress {
        ip: PEER.ip(),
        port: PEER.port(),
    }
    .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
    .expect("peer");
    m.add(ATTR_DATA, b"from peer");
    assert_eq!(
        parse_inbound(&m.raw),
        Ok(Inbound::Data {
            peer: PEER,
            data: b"from peer".to_vec()
        })
    );
    // A Send indication is not something a client receives.
    let send = Request::send(PEER, b"x").build(ID, None).expect("builds");
    assert!(parse_inbound(&send.raw).is_err());
}

#[test]
fn a_response_arrives_as_inbound_response() {
    let raw = response(CLASS_ERROR_RESPONSE, &[&error(437)]);
    let Ok(Inbound::Response(r)) = parse_inbound(&raw) else {
        panic!("an error response");
    };
    assert_eq!(r.error, Some((437, "reason".to_owned())));
}

#[test]
fn long_text_is_an_error_not_a_panic() {
    let mut c = Client::new("alice", "pw");
    c.set_session("example.org", &"n".repeat(2000));
    assert!(matches!(
        c.request(&Request::refresh(0)),
        Err(ClientError::Encode("NONCE"))
    ));
}

#[test]
fn a_session_can_leave_one_credential_out_and_still_sign() {
    let session = Session::new("alice", "pw", "example.org", "n0nce");
    for (left_out, kept) in [
        (ATTR_USERNAME, [ATTR_REALM, ATTR_NONCE]),
        (ATTR_REALM, [ATTR_USERNAME, ATTR_NONCE]),
        (ATTR_NONCE, [ATTR_USERNAME, ATTR_REALM]),
    ] {
        let s = session.clone().leaving_out(left_out);
        let back = decode(&Request::refresh(0).build(ID, Some(&s)).expect("builds").raw);
        let want = [ATTR_LIFETIME, kept[0], kept[1], ATTR_MESSAGE_INTEGRITY];
        assert_eq!(types(&back), [&want[..], &[ATTR_FINGERPRINT]].concat());
        assert_eq!(verify_integrity(&back, s.key()), Ok(Integrity::Sha1));
    }
    // Any other attribute leaves the session as it was.
    let same = session.clone().leaving_out(ATTR_LIFETIME);
    let a = Request::refresh(0).build(ID, Some(&same)).expect("builds");
    let b = Request::refresh(0)
        .build(ID, Some(&session))
        .expect("builds");
    assert_eq!(a.raw, b.raw);
}

#[test]
fn attributes_after_integrity_follow_the_mac_and_precede_the_fingerprint() {
    let s = Session::new("alice", "pw", "example.org", "n0nce");
    let req = Request::create_permission(&[PEER]).after_integrity(|r| r.peer(RELAY).lifetime(0));
    // The server's decoder drops what follows the MAC; the `stun` crate's keeps all.
    let mut back = Message::new();
    back.raw = req.build(ID, Some(&s)).expect("builds").raw;
    back.decode().expect("decodes");
    assert_eq!(
        types(&back),
        [
            ATTR_XOR_PEER_ADDRESS,
            ATTR_USERNAME,
            ATTR_REALM,
            ATTR_NONCE,
            ATTR_MESSAGE_INTEGRITY,
            ATTR_XOR_PEER_ADDRESS,
            ATTR_LIFETIME,
            ATTR_FINGERPRINT
        ]
    );
    // The MAC covers what came before it only, so it still verifies.
    assert_eq!(verify_integrity(&back, s.key()), Ok(Integrity::Sha1));
    let peers: Vec<_> = (back.attributes.0.iter())
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|a| decode_xor_address(&a.value, &ID.0))
        .collect();
    assert_eq!(peers, [Some(PEER), Some(RELAY)]);
    // Unsigned, they simply come after the request's own.
    let back = decode(&req.build(ID, None).expect("builds").raw);
    assert_eq!(
        types(&back),
        [
            ATTR_XOR_PEER_ADDRESS,
            ATTR_XOR_PEER_ADDRESS,
            ATTR_LIFETIME,
            ATTR_FINGERPRINT
        ]
    );
}

#[test]
fn a_300_reads_its_alternate_server() {
    let alternate = stun::addr::AlternateServer {
        ip: RELAY.ip(),
        port: 3478,
    };
    let setter = |m: &mut Message| alternate.add_to_as(m, stun::attributes::ATTR_ALTERNATE_SERVER);
    struct Alt<F>(F);
    impl<F: Fn(&mut Message) -> Result<(), stun::Error>> Setter for Alt<F> {
        fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
            (self.0)(m)
        }
    }
    let raw = response(CLASS_ERROR_RESPONSE, &[&error(300), &Alt(setter)]);
    let r = Response::parse(&raw).expect("parses");
    assert_eq!(r.error_code(), Some(300));
    assert_eq!(r.alternate_server, Some(SocketAddr::new(RELAY.ip(), 3478)));
    // Absent, or too short to hold an address: none.
    let raw = response(CLASS_ERROR_RESPONSE, &[&error(508)]);
    assert_eq!(
        Response::parse(&raw).expect("parses").alternate_server,
        None
    );
    let short = |m: &mut Message| {
        m.add(stun::attributes::ATTR_ALTERNATE_SERVER, &[0, 1, 0x0d]);
        Ok(())
    };
    let raw = response(CLASS_ERROR_RESPONSE, &[&error(300), &Alt(short)]);
    assert_eq!(
        Response::parse(&raw).expect("parses").alternate_server,
        None
    );
}
