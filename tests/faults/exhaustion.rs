//! Exhaustion: every way to run out of room answers with its RFC 8656 code, and the room
//! comes back the moment it is freed. The refused and the resuming Allocates come from the
//! `turn` crate's client; the bare client holds allocations and frees them exactly when told.
//!
//! RFC 8656 §7.2: 486 (Allocation Quota Reached) is the answer to one username's quota;
//! 508 (Insufficient Capacity) to the server's own limits, no relay port left or the total
//! quota reached.

use std::sync::Arc;

use webrtc_util::Conn;

use super::raw::{Link, RawClient};
use super::*;

const ALLOC_TCP: &str = "rturn_allocations{transport=\"tcp\"}";

/// A `turn` crate client that allocates as `user`; the error text on refusal.
async fn turn_allocate(
    server: SocketAddr,
    user: &str,
    pass: &str,
) -> Result<(turn::client::Client, impl Conn + use<>), String> {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn_client(server, socket, user, pass).await;
    match tokio::time::timeout(TIMEOUT, client.allocate()).await {
        Ok(Ok(relay)) => Ok((client, relay)),
        Ok(Err(e)) => {
            client.close().await.unwrap();
            Err(e.to_string())
        }
        Err(_) => panic!("Allocate unanswered within {TIMEOUT:?}"),
    }
}

/// Asserts the `turn` crate's Allocate as `user` is refused with `code`.
async fn refused(server: SocketAddr, user: &str, pass: &str, code: u16) {
    match turn_allocate(server, user, pass).await {
        Ok((_, relay)) => panic!("{user} allocated {:?}", relay.local_addr()),
        Err(e) => assert!(e.contains(&code.to_string()), "{user}: {e}, not {code}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_port_range_is_508_until_a_refresh_of_zero_frees_it() {
    let (port, range) = one_port_range();
    let server = Server::start(&turn_config(&range));
    let udp = server.udp[0];

    let mut holder = RawClient::udp(udp, "alice", "wonderland");
    assert_eq!(holder.allocate(None).map(|(a, _)| a.port()), Ok(port));
    refused(udp, "bob", "builder", 508).await;
    refused(udp, "alice", "wonderland", 508).await;

    // Refresh with lifetime 0 deletes the allocation before it is answered, so the very next
    // Allocate gets the port.
    assert_eq!(holder.refresh(Duration::ZERO), Ok(Duration::ZERO));
    let (client, relay) = turn_allocate(udp, "bob", "builder")
        .await
        .expect("the freed port is handed out at once");
    assert_eq!(relay.local_addr().unwrap().port(), port);

    // It relays: the range was not left in a broken state.
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relay
        .send_to(b"after 508", peer.local_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 32];
    let (n, _) = tokio::time::timeout(TIMEOUT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"after 508");
    assert_eq!(
        server.metric("rturn_requests_refused_total{code=\"508\"}"),
        2.0
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn user_quota_is_486_total_quota_508_and_freed_room_is_used_at_once() {
    let quotas = "user-quota = 2\ntotal-quota = 3\n";
    let server = Server::start(&turn_config(quotas));
    let (udp, tcp) = (server.udp[0], server.tcp[0]);

    let mut a1 = RawClient::udp(udp, "alice", "wonderland");
    let mut a2 = RawClient::udp(udp, "alice", "wonderland");
    a1.allocate(None).unwrap();
    a2.allocate(None).unwrap();
    // alice holds her two: her third is hers to be refused (486), bob is still served.
    refused(udp, "alice", "wonderland", 486).await;
    let b1 = {
        let mut b1 = RawClient::tcp(tcp, "bob", "builder");
        b1.allocate(None).expect("bob's first, over TCP");
        b1
    };
    // Three held, the server's total: everyone gets 508, alice too (the server is full
    // before her quota matters).
    refused(udp, "bob", "builder", 508).await;
    refused(udp, "alice", "wonderland", 508).await;

    // A Refresh of 0 frees one: the next Allocate succeeds at once.
    assert_eq!(a1.refresh(Duration::ZERO), Ok(Duration::ZERO));
    let (bob, _bob_relay) = turn_allocate(udp, "bob", "builder")
        .await
        .expect("the room a Refresh of 0 freed");
    refused(udp, "alice", "wonderland", 508).await;

    // Closing the TCP connection frees bob's first: as soon as the server has seen the close,
    // alice allocates again.
    let Link::Tcp(stream) = b1.link else {
        unreachable!()
    };
    drop(stream);
    tokio::task::block_in_place(|| {
        wait_for("the TCP allocation to go", TIMEOUT, || {
            server.metric(ALLOC_TCP) == 0.0
        })
    });
    let (alice, _alice_relay) = turn_allocate(udp, "alice", "wonderland")
        .await
        .expect("the room a TCP close freed");

    let refusals =
        |code: &str| server.metric(&format!("rturn_requests_refused_total{{code=\"{code}\"}}"));
    assert_eq!((refusals("486"), refusals("508")), (1.0, 3.0));
    bob.close().await.unwrap();
    alice.close().await.unwrap();
}
