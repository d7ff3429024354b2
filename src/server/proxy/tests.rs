//! The glue on real loopback sockets: what it returns, what it leaves in the socket, what
//! it counts.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A policy trusting `trusted`, with a short timeout.
fn policy(trusted: &str) -> Policy {
    Policy {
        trusted: Box::new([trusted.parse().unwrap()]),
        timeout: Duration::from_millis(300),
        stats: Arc::default(),
    }
}

/// A connection to a fresh listener from 127.0.0.1: (client side, server side, its peer).
async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    (client, server, peer)
}

fn count(policy: &Policy, outcome: Outcome) -> u64 {
    policy.stats.0[outcome as usize].load(Relaxed)
}

/// What the server side reads next, up to `n` bytes.
async fn next_bytes(server: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    server.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn a_trusted_header_names_the_client_and_leaves_what_follows() {
    let policy = policy("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 3478\r\nSTUN")
        .await
        .unwrap();
    let real = policy.client(&mut server, peer).await;
    assert_eq!(real, Some("198.51.100.7:40000".parse().unwrap()));
    assert_eq!(next_bytes(&mut server, 4).await, b"STUN");
    assert_eq!(count(&policy, Outcome::V1), 1);
}

#[tokio::test]
async fn a_header_in_pieces_is_waited_for() {
    let policy = policy("127.0.0.0/8");
    let (mut client, mut server, peer) = pair().await;
    let mut header = proxy_protocol::V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[
        0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0x13, 0x88, 0, 1,
    ]);
    header.extend_from_slice(&[0x16, 0x03]); // a ClientHello begins
    let writer = tokio::spawn(async move {
        for piece in header.chunks(5) {
            client.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client
    });
    let real = policy.client(&mut server, peer).await;
    assert_eq!(real, Some("203.0.113.9:5000".parse().unwrap()));
    let _client = writer.await.unwrap();
    assert_eq!(next_bytes(&mut server, 2).await, [0x16, 0x03]);
    assert_eq!(count(&policy, Outcome::V2), 1);
}

#[tokio::test]
async fn local_and_unknown_keep_the_connections_own_address() {
    let policy = policy("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
    assert_eq!(policy.client(&mut server, peer).await, Some(peer));
}

#[tokio::test]
async fn a_trusted_connection_without_a_header_is_refused() {
    let policy = policy("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42])
        .await
        .unwrap();
    assert_eq!(policy.client(&mut server, peer).await, None);
    assert_eq!(count(&policy, Outcome::Missing), 1);
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n")
        .await
        .unwrap();
    assert_eq!(policy.client(&mut server, peer).await, None);
    assert_eq!(count(&policy, Outcome::Malformed), 1);
}

#[tokio::test]
async fn a_trusted_connection_that_says_nothing_times_out() {
    let policy = policy("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    assert_eq!(policy.client(&mut server, peer).await, None);
    assert_eq!(count(&policy, Outcome::Timeout), 1);
}

#[tokio::test]
async fn an_untrusted_header_is_refused_and_other_bytes_are_served_untouched() {
    let policy = policy("10.0.0.0/8");
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 3478\r\n")
        .await
        .unwrap();
    assert_eq!(policy.client(&mut server, peer).await, None);
    assert_eq!(count(&policy, Outcome::Untrusted), 1);
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(policy.client(&mut server, peer).await, Some(peer));
    assert_eq!(next_bytes(&mut server, 4).await, b"GET ");
    // Silent: served as itself once the timeout passes (its own timers take over).
    let (_client, mut server, peer) = pair().await;
    assert_eq!(policy.client(&mut server, peer).await, Some(peer));
    assert_eq!(count(&policy, Outcome::Untrusted), 1);
}

#[test]
fn mapped_ipv4_peers_match_ipv4_networks() {
    let policy = policy("10.0.0.0/8");
    assert!(policy.trusts("[::ffff:10.1.2.3]:1".parse().unwrap()));
    assert!(policy.trusts("10.1.2.3:1".parse().unwrap()));
    assert!(!policy.trusts("11.1.2.3:1".parse().unwrap()));
}

#[test]
fn every_outcome_is_reported() {
    let policy = policy("10.0.0.0/8");
    policy.stats.count(Outcome::Untrusted);
    let text = crate::metrics::render(&[policy.stats.as_ref()]);
    assert!(text.contains("rturn_proxy_protocol_total{outcome=\"refused_untrusted\"} 1\n"));
    assert_eq!(
        text.matches("rturn_proxy_protocol_total{").count(),
        Outcome::ALL.len()
    );
}
