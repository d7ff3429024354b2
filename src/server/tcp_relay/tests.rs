//! The table of peer connections waiting for their ConnectionBind, and a relayed listener
//! with an outgoing connect from its own address, on real loopback sockets.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::*;
use crate::server::descriptors::Budget;
use crate::turn::tcp_link::{BIND_TIMEOUT, TcpLink};

/// A connected loopback socket (the peer's end is returned too, to keep it open).
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    (ours, theirs)
}

#[test]
fn a_waiting_connection_is_bound_once_by_its_user_or_expires() {
    let waiting = Waiting::default();
    let link = Arc::new(TcpLink::new("alice", 1));
    let t0 = Instant::now();
    let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let (socket, _peer_end) = socket_pair();
    let id = waiting
        .insert(socket, peer, (link.open(peer, false).unwrap(), None), t0)
        .unwrap();
    assert_ne!(id, 0);
    // Another user cannot bind it, nor make it go away.
    assert!(waiting.take(id, "bob", t0).is_none());
    assert_eq!(waiting.expire(t0), 0);
    let bound = waiting.take(id, "alice", t0).expect("alice's");
    assert_eq!(bound.peer, peer);
    assert!(waiting.take(id, "alice", t0).is_none(), "bound twice");
    drop(bound);
    assert_eq!(link.open_connections(), 0);

    // Nobody binds it for BIND_TIMEOUT: closed, its place given back.
    let (socket, mut peer_end) = socket_pair();
    let id = (waiting.insert(socket, peer, (link.open(peer, false).unwrap(), None), t0)).unwrap();
    assert_eq!(
        waiting.expire(t0 + BIND_TIMEOUT - Duration::from_secs(1)),
        0
    );
    assert_eq!(waiting.expire(t0 + BIND_TIMEOUT), 1);
    assert!(waiting.take(id, "alice", t0).is_none());
    assert_eq!(link.open_connections(), 0);
    let mut buf = [0u8; 1];
    peer_end
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        std::io::Read::read(&mut peer_end, &mut buf).unwrap(),
        0,
        "closed"
    );

    // Its allocation ends: closed on the next tick, and a late ConnectionBind finds nothing.
    let (socket, _peer_end) = socket_pair();
    let id = (waiting.insert(socket, peer, (link.open(peer, false).unwrap(), None), t0)).unwrap();
    link.end();
    assert!(waiting.take(id, "alice", t0).is_none());
    assert_eq!(
        waiting.expire(t0),
        0,
        "taken out by the refused bind already"
    );
    assert_eq!(link.open_connections(), 0);
}

#[test]
fn an_outgoing_connect_leaves_from_the_relayed_listeners_address() {
    let relay = listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let from = relay.local_addr().unwrap();
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = connect(from, peer.local_addr().unwrap()).unwrap();
    let (_at_peer, seen) = peer.accept().unwrap();
    assert_eq!(seen, from);
    drop(socket);
    // The listener still accepts.
    let _client = TcpStream::connect(from).unwrap();
    relay.set_nonblocking(false).unwrap();
    assert!(relay.accept().is_ok());
}

#[test]
fn an_accept_out_of_descriptors_is_retried_other_failures_are_not() {
    use nix::errno::Errno;
    let os = |errno: Errno| io::Error::from_raw_os_error(errno as i32);
    assert!(out_of_descriptors(&os(Errno::EMFILE)));
    assert!(out_of_descriptors(&os(Errno::ENFILE)));
    assert!(!out_of_descriptors(&os(Errno::ECONNABORTED)));
    assert!(!out_of_descriptors(&io::Error::other("other")));
}

#[test]
fn every_peer_socket_draws_on_the_descriptor_budget() {
    use crate::server::descriptors::Split;
    let waiting = Waiting::default();
    // No budget to draw on (a test's table): no permit needed.
    assert!(matches!(waiting.permit(), Some(None)));
    let budget = Budget::new(Split {
        limit: 100,
        relay: 50,
        connections: 2,
        http: 1,
    });
    waiting.share_budget(&budget);
    let first = waiting.permit().expect("room").expect("a permit");
    let second = waiting.permit().expect("room").expect("a permit");
    assert_eq!(budget.held(), (2, 0));
    // Spent: a Connect gets 508, a peer connecting in is closed.
    assert!(waiting.permit().is_none());
    // Given back with the socket (the connection waiting, then bound, then closed).
    let link = std::sync::Arc::new(TcpLink::new("alice", 1));
    let (socket, _theirs) = socket_pair();
    let peer = socket.peer_addr().unwrap();
    let t0 = Instant::now();
    let slot = link.open(peer, false).unwrap();
    let id = waiting
        .insert(socket, peer, (slot, Some(first)), t0)
        .unwrap();
    drop(second);
    assert_eq!(budget.held(), (1, 0));
    assert_eq!(waiting.expire(t0 + BIND_TIMEOUT), 1);
    assert_eq!(budget.held(), (0, 0));
    assert!(waiting.take(id, "alice", t0).is_none());
}

#[test]
fn one_client_address_holds_its_share_of_the_table_and_no_more() {
    let waiting = Waiting::with_per_client_cap(2);
    let t0 = Instant::now();
    // Two allocations of client address 1 (one user, or two), one of address 2.
    let links = [1, 1, 2].map(|client| Arc::new(TcpLink::new("alice", client)));
    let mut ends = Vec::new();
    let mut wait = |link: &Arc<TcpLink>| {
        let (socket, theirs) = socket_pair();
        let peer = theirs.local_addr().unwrap();
        ends.push(theirs);
        let slot = link.open(peer, false).unwrap();
        waiting.insert(socket, peer, (slot, None), t0)
    };
    let first = wait(&links[0]).expect("room");
    assert!(
        wait(&links[1]).is_some(),
        "another allocation of the address"
    );
    assert_eq!(wait(&links[0]), None, "the address's share is full");
    assert_eq!(wait(&links[1]), None);
    assert!(wait(&links[2]).is_some(), "another address is not held up");
    // Bound (or expired), a connection gives its place back.
    assert!(waiting.take(first, "alice", t0).is_some());
    assert!(wait(&links[0]).is_some());
    assert_eq!(waiting.expire(t0 + BIND_TIMEOUT), 3);
    assert!(wait(&links[1]).is_some());
    assert!(wait(&links[1]).is_some());
}
