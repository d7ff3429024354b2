//! Black-box interop: the webrtc-rs `turn` crate's client (a client we did not write) allocates
//! on the built binary, relays UDP both ways to a peer, authenticates with a static user and a
//! TURN REST secret, and is refused with a wrong password or a forbidden peer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, Mac};
use rturn::testkit::*;
use sha1::Sha1;
use stun::agent::TransactionId;
use stun::fingerprint::FINGERPRINT;
use stun::message::{CLASS_INDICATION, METHOD_SEND, Message, MessageType, Setter};
use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;
use webrtc_util::Conn;

/// Relays on loopback to loopback peers, for one static user and one REST secret.
const TURN: &str = "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
    [auth]\nstatic-auth-secret = \"test-secret\"\n[auth.users]\nalice = \"wonderland\"\n";

/// The same, but loopback peers are forbidden (the default).
const TURN_NO_LOOPBACK_PEERS: &str = "[relay]\nrelay-ip = \"127.0.0.1\"\n\
    [auth]\nstatic-auth-secret = \"test-secret\"\n[auth.users]\nalice = \"wonderland\"\n";

/// How long a packet that must not arrive is waited for.
const SILENCE: Duration = Duration::from_secs(1);

/// Awaits `fut`, failing the test after [`TIMEOUT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// A UDP socket on IPv4 loopback, port 0.
async fn loopback_socket() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
}

/// Sends `payload` from the relay to `peer` and back, checking bytes and addresses each way.
async fn round_trip(relay: &impl Conn, peer: &UdpSocket, payload: &[u8]) {
    let relayed = relay.local_addr().unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];

    within("relay send", relay.send_to(payload, peer_addr))
        .await
        .unwrap();
    let (n, from) = within("peer receive", peer.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], payload, "peer got the bytes the client sent");
    assert_eq!(from, relayed, "peer sees the relayed address as the source");

    let reply: Vec<u8> = payload.iter().rev().copied().collect();
    peer.send_to(&reply, from).await.unwrap();
    let (n, from) = within("relay receive", relay.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], &reply[..], "client got the bytes the peer sent");
    assert_eq!(from, peer_addr, "client sees the peer's address");
}

#[tokio::test(flavor = "multi_thread")]
async fn turn_crate_client_relays_to_a_udp_peer() {
    let server = Server::start(&loopback_config(TURN));
    let client = turn_client(
        server.udp[0],
        loopback_socket().await,
        "alice",
        "wonderland",
    )
    .await;
    let relay = match within("allocate", client.allocate()).await {
        Ok(relay) => relay,
        Err(e) => panic!("allocate failed: {e}\n{}", server.log()),
    };
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "relay-ip");
    assert!(!server.udp.contains(&relayed), "a relay port of its own");

    // The first packet goes as a Send indication while the client binds a channel; the rest
    // go as ChannelData once the ChannelBind succeeded. Sizes vary up to a full MTU.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..20u64 {
        let payload = noise(i, 1 + (i as usize * 61) % 1200);
        round_trip(&relay, &peer, &payload).await;
    }
    round_trip(&relay, &peer, b"hello").await;

    within("relay close", relay.close()).await.unwrap();
    within("client close", client.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn turn_crate_client_with_rest_credentials() {
    let server = Server::start(&loopback_config(TURN));
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let username = format!("{expiry}:bob");
    let mut mac = Hmac::<Sha1>::new_from_slice(b"test-secret").unwrap();
    mac.update(username.as_bytes());
    let password = BASE64_STANDARD.encode(mac.finalize().into_bytes());

    let client = turn_client(server.udp[0], loopback_socket().await, &username, &password).await;
    let relay = match within("allocate", client.allocate()).await {
        Ok(relay) => relay,
        Err(e) => panic!("REST allocate failed: {e}\n{}", server.log()),
    };
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    round_trip(&relay, &peer, b"hello over REST credentials").await;
    within("client close", client.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_and_allocates_nothing() {
    let server = Server::start(&loopback_config(TURN));
    let socket = loopback_socket().await;

    for (user, pass) in [("alice", "looking-glass"), ("mallory", "wonderland")] {
        let bad = turn_client(server.udp[0], Arc::clone(&socket), user, pass).await;
        match within("refused allocate", bad.allocate()).await {
            Ok(relay) => panic!("{user}/{pass} got a relay at {:?}", relay.local_addr()),
            Err(e) => assert!(e.to_string().contains("401"), "{user}: {e}"),
        }
        within("client close", bad.close()).await.unwrap();
    }

    // Same socket, same 5-tuple: had the refused requests left an allocation behind, this
    // one would get 437 Allocation Mismatch.
    let good = turn_client(server.udp[0], Arc::clone(&socket), "alice", "wonderland").await;
    let relay = match within("allocate", good.allocate()).await {
        Ok(relay) => relay,
        Err(e) => panic!("allocate after refusals failed: {e}\n{}", server.log()),
    };
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    round_trip(&relay, &peer, b"still works").await;
    within("client close", good.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_peer_gets_nothing() {
    let server = Server::start(&loopback_config(TURN_NO_LOOPBACK_PEERS));
    let socket = loopback_socket().await;
    let client = turn_client(server.udp[0], Arc::clone(&socket), "alice", "wonderland").await;
    let relay = match within("allocate", client.allocate()).await {
        Ok(relay) => relay,
        Err(e) => panic!("allocate failed: {e}\n{}", server.log()),
    };
    let relayed = relay.local_addr().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();

    // The client asks for a permission first and gives up on 403 Forbidden.
    match within("relay send", relay.send_to(b"hello", peer_addr)).await {
        Ok(n) => panic!("send to a loopback peer accepted ({n} bytes)"),
        Err(e) => assert!(e.to_string().contains("403"), "{e}"),
    }

    // A Send indication on the allocation's 5-tuple, without the client's caution: the server
    // must drop it, as there is no permission for the peer.
    let mut send = Message::new();
    let setters: [Box<dyn Setter>; 5] = [
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        Box::new(Data(b"sneaky".to_vec())),
        Box::new(PeerAddress {
            ip: peer_addr.ip(),
            port: peer_addr.port(),
        }),
        Box::new(FINGERPRINT),
    ];
    send.build(&setters).unwrap();
    socket.send_to(&send.raw, server.udp[0]).await.unwrap();

    let mut buf = [0u8; 1500];
    let got = timeout(SILENCE, peer.recv_from(&mut buf)).await;
    assert!(got.is_err(), "forbidden peer received {got:?}");

    // Nor does the forbidden peer get through to the client.
    peer.send_to(b"let me in", relayed).await.unwrap();
    let got = timeout(SILENCE, relay.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "client received {got:?} from a forbidden peer"
    );

    within("client close", client.close()).await.unwrap();
}
