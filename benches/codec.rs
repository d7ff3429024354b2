//! Micro-benchmarks of the STUN codec on the per-packet path: first-byte classification,
//! decoding a Binding and an authenticated Allocate request, answering a Binding, and
//! framing a TCP stream of mixed STUN and ChannelData.
//!
//! `cargo bench --bench codec`; `cargo test --benches` runs each benchmark once as a check.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_main};
use rturn::auth::Integrity;
use rturn::client::Request;
use rturn::stun::codec::{PacketKind, decode_into, packet_kind};
use rturn::stun::{Outcome, Responder, next_frame};
use stun::message::{CLASS_SUCCESS_RESPONSE, Message};

const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 40000);

/// A Binding request as STUN clients send it: no attributes but FINGERPRINT.
fn binding() -> Vec<u8> {
    common::request(&Request::binding(), 1, None)
}

/// An Allocate after the 401: REQUESTED-TRANSPORT, USERNAME, REALM, NONCE,
/// MESSAGE-INTEGRITY, FINGERPRINT.
fn allocate() -> Vec<u8> {
    let signer = common::signer(&common::auth(), CLIENT, Integrity::Sha1);
    common::request(&Request::allocate(), 2, Some(&signer))
}

/// ChannelData as it travels on a stream: padded to a multiple of 4 (RFC 8656 §12.5).
fn channel_data(number: u16, payload: u16) -> Vec<u8> {
    let mut frame = [number.to_be_bytes(), payload.to_be_bytes()].concat();
    frame.resize(4 + usize::from(payload), 0xab);
    frame.resize(frame.len().next_multiple_of(4), 0);
    frame
}

fn classify(c: &mut Criterion) {
    let rtp = [0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let packets = [binding(), channel_data(0x4000, 160), rtp.to_vec()];
    let kinds = packets.iter().map(|p| packet_kind(p));
    let expected = [PacketKind::Stun, PacketKind::ChannelData, PacketKind::Other];
    assert!(kinds.eq(expected), "one packet of each kind");

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function("packet_kind/stun+channeldata+rtp", |b| {
        b.iter(|| {
            for packet in &packets {
                black_box(packet_kind(black_box(packet)));
            }
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let mut msg = Message::new();
    for (name, packet) in [
        ("decode_into/binding", binding()),
        ("decode_into/allocate_authenticated", allocate()),
    ] {
        decode_into(&packet, &mut msg).expect("the request is well-formed");
        group.bench_function(name, |b| {
            b.iter(|| decode_into(black_box(&packet), &mut msg))
        });
    }
    group.finish();
}

fn answer(c: &mut Criterion) {
    let packet = binding();
    let mut responder = Responder::new();
    let Outcome::Reply(reply) = responder.handle(&packet, CLIENT) else {
        panic!("a Binding request is answered");
    };
    let mut msg = Message::new();
    decode_into(reply, &mut msg).expect("the reply is well-formed");
    assert_eq!(msg.typ.class, CLASS_SUCCESS_RESPONSE);

    let mut group = c.benchmark_group("codec");
    group.bench_function("responder/binding", |b| {
        b.iter(|| match responder.handle(black_box(&packet), CLIENT) {
            Outcome::Reply(reply) => black_box(reply).len(),
            _ => 0,
        })
    });
    group.finish();
}

fn framing(c: &mut Criterion) {
    // What one TCP read might hold: control requests among audio and video ChannelData,
    // some of it needing padding.
    let mixed = [
        binding(),
        channel_data(0x4000, 160),
        channel_data(0x4001, 1200),
        allocate(),
        channel_data(0x4000, 61),
    ];
    let stream = mixed.concat().repeat(4);
    let frames = 4 * mixed.len();
    let count = |mut buf: &[u8]| {
        let mut n = 0;
        while let Ok(Some(frame)) = next_frame(buf) {
            buf = &buf[frame.len()..];
            n += 1;
        }
        n
    };
    assert_eq!(count(&stream), frames, "every frame is found");

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("next_frame/mixed_stream_20_frames", |b| {
        b.iter(|| count(black_box(&stream)))
    });
    group.finish();
}

/// Every benchmark of this file, with the short measurement times of [`common::criterion`].
fn benches() {
    let mut c = common::criterion();
    classify(&mut c);
    decode(&mut c);
    answer(&mut c);
    framing(&mut c);
}

criterion_main!(benches);
