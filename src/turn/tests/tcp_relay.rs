//! RFC 6062 TCP allocations, as the manager decides them: which Allocates get a TCP relay,
//! what Connect and ConnectionBind are answered or handed to the loop as, the permission a
//! Connect installs, which peers may connect in, and the per-allocation link the peer
//! connections share (cap, 446, the allocation's end), in virtual time.

use std::sync::Arc;

use stun::attributes::ATTR_CONNECTION_ID;
use stun::message::{METHOD_ALLOCATE, METHOD_CONNECT, METHOD_CONNECTION_BIND};

use super::*;
use crate::turn::tcp_link::{
    BIND_TIMEOUT, MAX_CONNECTIONS, MAX_UNBOUND, PROTO_TCP, TcpLink, TcpOrder, bind_check,
    nonce_client,
};

/// The n-th client over TCP.
fn tcp_tuple(n: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        ..tuple(n)
    }
}

fn tcp_allocate() -> Request {
    Request::new(METHOD_ALLOCATE).transport(PROTO_TCP)
}

fn connect(peer: SocketAddr) -> Request {
    Request::new(METHOD_CONNECT).peer(peer)
}

fn connection_bind(id: u32) -> Request {
    Request::new(METHOD_CONNECTION_BIND).attr(ATTR_CONNECTION_ID, &id.to_be_bytes())
}

impl Harness {
    /// A TCP client of alice's with a TCP allocation; its relay address as advertised.
    fn tcp_alice(&mut self, n: u16) -> (Caller, SocketAddr) {
        let alice = self.login(0, tcp_tuple(n), "alice", "wonderland");
        let relay = self.ok(0, &alice, tcp_allocate()).relayed[0];
        (alice, relay)
    }

    /// A request answered later: the order it became, and nothing sent yet.
    fn later(&mut self, secs: u64, client: &Caller, req: Request) -> TcpOrder {
        let req = decode(&client.signed(&req));
        let now = self.at(secs);
        assert!(matches!(
            self.mgr.mgr.handle_request(now, client.tuple, &req),
            Answer::Later
        ));
        let order = self.mgr.poll_tcp_order().expect("an order");
        assert!(self.mgr.poll_tcp_order().is_none());
        order
    }
}

#[test]
fn a_tcp_allocation_over_tcp_only_and_without_udp_only_attributes() {
    let mut h = Setup::default().start();
    let (alice, relay) = h.tcp_alice(1);
    assert_eq!(relay, SocketAddr::new(ADVERTISED_V4, 50000));
    assert_eq!(h.held(), [SocketAddr::new(RELAY_V4, 50000)]);
    // RFC 6062 §5.1: TCP with DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN is 400.
    let bob = h.login(0, tcp_tuple(2), "bob", "builder");
    h.refused(0, &bob, tcp_allocate().dont_fragment(), 400);
    h.refused(0, &bob, tcp_allocate().even_port(false), 400);
    h.refused(0, &bob, tcp_allocate().reservation_token(&[1; 8]), 400);
    // Over UDP: 400.
    let udp = h.bob(3);
    h.refused(0, &udp, tcp_allocate(), 400);
    // The quotas count it like any allocation.
    assert_eq!(h.quotas.total(), 1);
    // Deleting it closes its listener.
    h.ok(1, &alice, Request::refresh(0));
    assert!(h.held().is_empty());
}

#[test]
fn tcp_allocations_off_is_442() {
    let mut setup = Setup::default();
    setup.config.tcp_allocations = false;
    let mut h = setup.start();
    let alice = h.login(0, tcp_tuple(1), "alice", "wonderland");
    h.refused(0, &alice, tcp_allocate(), 442);
    // UDP relays as ever.
    h.ok(0, &alice, Request::allocate());
}

#[test]
fn a_tcp_allocation_counts_against_the_quotas() {
    let mut h = Setup {
        quotas: Quotas::new(limits(1, 0, 0)),
        ..Setup::default()
    }
    .start();
    let _first = h.tcp_alice(1);
    let again = h.login(0, tcp_tuple(2), "alice", "wonderland");
    h.refused(0, &again, tcp_allocate(), 486);
}

#[test]
fn connect_checks_the_allocation_and_the_peer_rules() {
    let mut h = Setup::default().start();
    // No allocation: 437; a UDP allocation: 400.
    let stranger = h.login(0, tcp_tuple(9), "alice", "wonderland");
    h.refused(0, &stranger, connect(PEER_A), 437);
    let udp = h.alice(8);
    h.allocate(0, &udp);
    h.refused(0, &udp, connect(PEER_A), 400);

    let (alice, relayed) = h.tcp_alice(1);
    // Loopback, and the server's own listener, are refused by default (403).
    h.refused(0, &alice, connect(sa("127.0.0.1:5000")), 403);
    h.refused(0, &alice, connect(SERVER), 403);
    // No XOR-PEER-ADDRESS: 400; an IPv6 peer of an IPv4 relay: 443.
    h.refused(0, &alice, Request::new(METHOD_CONNECT), 400);
    h.refused(0, &alice, connect(PEER_V6), 443);
    assert!(h.mgr.poll_tcp_order().is_none());

    // An allowed peer: the loop connects from the relay address.
    let order = h.later(0, &alice, connect(PEER_A));
    let TcpOrder::Connect {
        tuple, relay, peer, ..
    } = &order
    else {
        panic!("{order:?}");
    };
    assert_eq!(
        (*tuple, *relay, *peer),
        (
            alice.tuple,
            SocketAddr::new(RELAY_V4, relayed.port()),
            PEER_A
        )
    );
    // Connecting already: 446.
    h.refused(0, &alice, connect(PEER_A), 446);
    // A failed connect: 447, and the peer may be asked again.
    let TcpOrder::Connect { later, slot, .. } = order else {
        unreachable!()
    };
    let now = h.at(1);
    let failed = read(h.mgr.tcp_answer(now, alice.tuple, &later, Err(447)));
    assert_error(&failed, 447);
    assert_eq!(
        verify_integrity(&failed.msg, alice.key()),
        Ok(Integrity::Sha1)
    );
    drop(slot);
    let _again = h.later(2, &alice, connect(PEER_A));
}

#[test]
fn a_connect_that_succeeds_answers_its_connection_id_and_permits_the_peer() {
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    let slot = slot_of(SocketAddr::new(RELAY_V4, 50000));
    // A peer without a permission may not connect in.
    assert!(h.mgr.tcp_accept(h.at(0), slot, PEER_A).is_none());
    let TcpOrder::Connect {
        later, slot: place, ..
    } = h.later(0, &alice, connect(PEER_A))
    else {
        panic!("not a Connect");
    };
    let now = h.at(1);
    let ok = read(
        h.mgr
            .tcp_answer(now, alice.tuple, &later, Ok(Some((0xabcd_0123, PEER_A)))),
    );
    assert_success(&ok, alice.key());
    let id = ok.msg.get(ATTR_CONNECTION_ID).unwrap();
    assert_eq!(id, 0xabcd_0123u32.to_be_bytes());
    // The peer's IP is permitted now (RFC 6062 §5.2): another of its ports may connect in,
    // for the permission's lifetime; other peers may not.
    let from_peer = SocketAddr::new(PEER_A.ip(), 6001);
    let (tuple, accepted) = h
        .mgr
        .tcp_accept(h.at(2), slot, from_peer)
        .expect("permitted");
    assert_eq!(tuple, alice.tuple);
    assert!(h.mgr.tcp_accept(h.at(2), slot, PEER_B).is_none());
    assert!(
        h.mgr.tcp_accept(h.at(302), slot, from_peer).is_none(),
        "lapsed"
    );
    // Both connections count in the allocation.
    assert_eq!(accepted.link().open_connections(), 2);
    drop((place, accepted));
}

#[test]
fn connection_bind_is_for_a_new_tcp_connection_naming_its_id() {
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    // On the control connection (it holds the allocation): 400. Without CONNECTION-ID: 400.
    h.refused(0, &alice, connection_bind(7), 400);
    let data = h.login(0, tcp_tuple(2), "alice", "wonderland");
    h.refused(0, &data, Request::new(METHOD_CONNECTION_BIND), 400);
    // Over UDP: 400.
    let udp = h.alice(3);
    h.refused(0, &udp, connection_bind(7), 400);
    // Else the loop looks the id up, for this user.
    let order = h.later(0, &data, connection_bind(7));
    let TcpOrder::Bind {
        tuple,
        id,
        user,
        later,
    } = order
    else {
        panic!("not a Bind");
    };
    assert_eq!((tuple, id, user.as_str()), (data.tuple, 7, "alice"));
    let now = h.at(0);
    let unknown = read(h.mgr.tcp_answer(now, data.tuple, &later, Err(400)));
    assert_error(&unknown, 400);
    let bound = read(h.mgr.tcp_answer(now, data.tuple, &later, Ok(None)));
    assert_success(&bound, data.key());
    assert!(!bound.contains(ATTR_CONNECTION_ID));
}

#[test]
fn the_link_caps_connections_refuses_a_second_connect_and_dies_with_the_allocation() {
    let link = Arc::new(TcpLink::new("alice", 1));
    // Bound ones: the cap on unbound connections is another test's.
    let open_bound = |i: usize| {
        let mut slot = link.open(v4(192, 0, 2, 1, 1000 + i as u16), false).unwrap();
        slot.bound();
        slot
    };
    let mut held: Vec<_> = (0..MAX_CONNECTIONS).map(open_bound).collect();
    assert_eq!(link.open(PEER_A, true).map(|_| ()), Err(508));
    held.pop();
    let to_a = link.open(PEER_A, true).unwrap();
    // A peer that connected in counts as connected too.
    assert_eq!(link.open(PEER_A, true).map(|_| ()), Err(446));
    // A peer already connected in: 446; a new one at the cap: 508.
    assert_eq!(
        link.open(v4(192, 0, 2, 1, 1000), true).map(|_| ()),
        Err(446)
    );
    assert_eq!(link.open(v4(192, 0, 2, 2, 1), true).map(|_| ()), Err(508));
    drop(to_a);
    drop(held);
    assert_eq!(link.open_connections(), 0);
    assert!(link.open(PEER_A, true).is_ok());

    let t0 = std::time::Instant::now();
    let deadline = t0 + BIND_TIMEOUT;
    assert_eq!(bind_check(&link, "alice", deadline, t0), Ok(()));
    assert_eq!(bind_check(&link, "bob", deadline, t0), Err(400));
    assert_eq!(bind_check(&link, "alice", deadline, deadline), Err(400));
    link.end();
    assert_eq!(bind_check(&link, "alice", deadline, t0), Err(400));
}

#[test]
fn deleting_or_expiring_a_tcp_allocation_ends_its_link() {
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    let TcpOrder::Connect { slot, .. } = h.later(0, &alice, connect(PEER_A)) else {
        panic!("not a Connect");
    };
    assert!(slot.link().is_alive());
    h.ok(1, &alice, Request::refresh(0));
    assert!(!slot.link().is_alive());

    let (bob, _) = h.tcp_alice(2);
    let TcpOrder::Connect { slot, .. } = h.later(0, &bob, connect(PEER_B)) else {
        panic!("not a Connect");
    };
    h.expire(601);
    assert!(!slot.link().is_alive());
    // The control connection closing does the same (RFC 8656 §3.1).
    let (carol, _) = h.tcp_alice(3);
    let TcpOrder::Connect { slot, .. } = h.later(0, &carol, connect(PEER_C)) else {
        panic!("not a Connect");
    };
    h.close(0, carol.tuple);
    assert!(!slot.link().is_alive());
}

#[test]
fn a_tcp_nonce_holds_for_every_connection_of_the_client_ip() {
    let (udp, tcp) = (tuple(1), tcp_tuple(1));
    assert_eq!(nonce_client(udp), udp.client);
    assert_eq!(nonce_client(tcp), SocketAddr::new(tcp.client.ip(), 0));
    // A data connection from another port signs with its control connection's nonce.
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    let data = Caller {
        tuple: tcp_tuple(2),
        session: alice.session.clone(),
    };
    let _ = h.later(0, &data, connection_bind(7));
}

/// Every relay port of the pool is live, as the shared port table would say; 50002 is a
/// TCP allocation's listener.
#[derive(Debug)]
struct AllLive;

impl crate::turn::own_relays::LiveRelays for AllLive {
    fn holds(&self, _port: u16, _ipv6: bool) -> bool {
        true
    }

    fn holds_tcp(&self, port: u16, _ipv6: bool) -> bool {
        port == 50002
    }
}

#[test]
fn connect_reaches_own_tcp_relay_listeners_only_not_every_own_relay_endpoint() {
    let mut setup = Setup::default();
    let own =
        crate::turn::own_relays::OwnRelays::new(vec![(RELAY_V4, ADVERTISED_V4)], Arc::new(AllLive));
    setup.rules = PeerRules::new(false, vec![], vec![], vec![SERVER]).with_own_relays(own);
    let mut h = setup.start();
    let (alice, _) = h.tcp_alice(1);
    // A live UDP relay port at the (loopback) relay IP: a Connect would reach whatever TCP
    // listener the host has there, so the loopback rule decides (403). UDP data to the same
    // endpoint is handed over inside rturn and stays allowed.
    h.refused(0, &alice, connect(SocketAddr::new(RELAY_V4, 50001)), 403);
    assert!(h.mgr.poll_tcp_order().is_none());
    // Another TCP allocation's listener is ours: two clients of one server connect to each
    // other's relays. Not at the advertised address, which would go out through the NAT
    // (a public address, so the plain rules decide; here TEST-NET-3, allowed).
    let _ours = h.later(0, &alice, connect(SocketAddr::new(RELAY_V4, 50002)));
    let _allowed = h.later(0, &alice, connect(PEER_A));
}

#[test]
fn the_permission_of_a_connect_counts_against_the_permission_cap() {
    let mut setup = Setup::default();
    setup.config.max_permissions = 1;
    let mut h = setup.start();
    let (alice, _) = h.tcp_alice(1);
    h.ok(0, &alice, Request::create_permission(&[PEER_B]));
    // At the cap: a Connect to a new IP is 508 and installs nothing.
    h.refused(0, &alice, connect(PEER_A), 508);
    assert!(h.mgr.poll_tcp_order().is_none());
    // To the IP already permitted, on another port: no new room needed.
    let _same = h.later(0, &alice, connect(SocketAddr::new(PEER_B.ip(), 7000)));
}

#[test]
fn a_tcp_allocation_takes_no_channel_bind_and_sends_no_send_indication() {
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    // RFC 6062 §5: its data goes over data connections; a channel would send from a UDP
    // relay that is not there (or that is another allocation's).
    h.refused(0, &alice, Request::channel_bind(0x4000, PEER_A), 400);
    assert_eq!(h.send_to(0, alice.tuple, PEER_A), None);
    let now = h.at(0);
    assert_eq!(h.mgr.channel_route(now, &alice.tuple, 0x4000, 10), None);
}

#[test]
fn an_allocation_holds_few_unbound_connections_and_binding_one_makes_room() {
    let link = Arc::new(TcpLink::new("alice", 1));
    let peer = |i: usize| v4(192, 0, 2, 1, 1000 + i as u16);
    let mut held: Vec<_> = (0..MAX_UNBOUND)
        .map(|i| link.open(peer(i), i % 2 == 0).unwrap())
        .collect();
    // Connecting or waiting for their ConnectionBind: at the cap, a Connect is 508 and a
    // peer connecting in is refused, though the allocation holds far fewer than its cap.
    assert_eq!(link.open(PEER_A, true).map(|_| ()), Err(508));
    assert_eq!(link.open(PEER_B, false).map(|_| ()), Err(508));
    assert_eq!(link.open_connections(), MAX_UNBOUND);
    // One bound (twice: counted once): room for one more unbound.
    held[0].bound();
    held[0].bound();
    let mut more = link.open(PEER_A, true).unwrap();
    assert_eq!(link.open(PEER_B, false).map(|_| ()), Err(508));
    // Dropping an unbound one makes room too; dropping a bound one does not count twice.
    drop(held.pop());
    let _b = link.open(PEER_B, false).unwrap();
    more.bound();
    drop(more);
    drop(held);
    assert_eq!(link.open_connections(), 1);
}

#[test]
fn a_connect_past_the_unbound_cap_is_508() {
    let mut h = Setup::default().start();
    let (alice, _) = h.tcp_alice(1);
    let _orders: Vec<_> = (0..MAX_UNBOUND)
        .map(|i| h.later(0, &alice, connect(v4(192, 0, 2, 1, 1000 + i as u16))))
        .collect();
    h.refused(0, &alice, connect(PEER_A), 508);
}

/// Pairs of one allocation on two workers may both read the room they saw before either
/// charged it: both reads are charged, the second into debt, so the allocation's rate over
/// time stays `max-bps` (an empty bucket at charge time once let the second read go free).
#[test]
fn pairs_on_two_workers_both_pay_for_what_they_read() {
    let mut setup = Setup::default();
    setup.config.max_bps = 10_000;
    let mut h = setup.start();
    let link = Arc::new(TcpLink::new("alice", 1));
    let now = h.t0;
    let (one, two) = (&mut h.mgr.mgr, &mut h.other_shard.mgr);
    let first = one.tcp_room(now, &mut link.buckets().to_peer, true);
    let second = two.tcp_room(now, &mut link.buckets().to_peer, true);
    assert_eq!((first, second), (10_000, 10_000));
    one.tcp_charge(now, &mut link.buckets().to_peer, true, first);
    two.tcp_charge(now, &mut link.buckets().to_peer, true, second);
    let at = |ms| now + std::time::Duration::from_millis(ms);
    let room = |mgr: &mut Manager, ms| mgr.tcp_room(at(ms), &mut link.buckets().to_peer, true);
    assert_eq!(room(one, 900), 0, "the second read is owed");
    assert_eq!(room(two, 1500), 5_000);
    // The other direction has its own bucket.
    assert_eq!(
        one.tcp_room(now, &mut link.buckets().to_client, false),
        10_000
    );
}
