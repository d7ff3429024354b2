//! Hand-offs between workers without their loops: batches, the bounded inbox and its
//! wake-up, and who gets what by the shared port table.

use std::net::SocketAddr;
use std::sync::Arc;

use mio::{Poll, Token, Waker};

use super::*;
use crate::server::stats::Stats;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Two workers' poll sets and inboxes, and the port pools.
fn setup(first: u16) -> ([Poll; 2], Arc<[Inbox]>, [Arc<PortPool>; 2]) {
    let polls = [Poll::new().unwrap(), Poll::new().unwrap()];
    let waker = |poll: &Poll| Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
    let inboxes: Arc<[Inbox]> = polls.iter().map(|p| Inbox::new(waker(p))).collect();
    let pool = || Arc::new(PortPool::new(first, first + 9));
    (polls, inboxes, [pool(), pool()])
}

fn batch(n: usize, len: usize) -> Batch {
    let mut batch = Batch::default();
    for i in 0..n {
        let port = 50_000 + i as u16;
        let route = Route {
            from: addr("203.0.113.9:1"),
            to: SocketAddr::new([127, 0, 0, 1].into(), port),
            slot: i,
        };
        batch.push(route, &vec![i as u8; len]);
    }
    batch
}

#[test]
fn an_inbox_is_read_only_after_a_sender_queued_and_woke_it() {
    let ([mut poll0, mut poll1], inboxes, _) = setup(51_100);
    let mut taken = Vec::new();
    inboxes[1].take(&mut taken);
    assert!(taken.is_empty());
    inboxes[1].offer(batch(1, 10)).unwrap();
    inboxes[1].offer(batch(1, 10)).unwrap();
    // Worker 1's loop is woken, worker 0's is not.
    let mut events = mio::Events::with_capacity(8);
    let wait = Some(std::time::Duration::from_secs(5));
    poll1.poll(&mut events, wait).unwrap();
    assert_eq!(events.iter().count(), 1);
    poll0
        .poll(&mut events, Some(std::time::Duration::ZERO))
        .unwrap();
    assert!(events.is_empty());
    inboxes[1].take(&mut taken);
    assert_eq!(taken.len(), 2);
    inboxes[1].take(&mut taken);
    assert_eq!(taken.len(), 2, "nothing new");
}

#[test]
fn data_goes_to_the_worker_holding_the_port_and_nowhere_when_none_does() {
    let (_poll, inboxes, pools) = setup(51_200);
    let stats = Stats::default();
    let counters = stats.register();
    let mut mine = Handoffs::new(
        0,
        Arc::clone(&inboxes),
        pools.clone(),
        Arc::clone(&counters),
    );
    let (here, there, free) = (51_201, 51_202, 51_203);
    pools[0].set_owner(here, 0, 7);
    pools[0].set_owner(there, 1, 9);
    let to = |port| SocketAddr::new([127, 0, 0, 1].into(), port);
    let from = addr("203.0.113.9:51204");
    assert!(mine.push(from, to(here), b"to me"));
    assert!(mine.push(from, to(there), b"to worker 1"));
    assert!(
        !mine.push(from, to(free), b"to nobody"),
        "a port nobody holds"
    );
    assert!(
        !mine.push(from, addr("[::1]:51201"), b"IPv6"),
        "the other family's pool"
    );
    mine.flush();
    // Worker 1 got its datagram through its inbox...
    let mut theirs = Vec::new();
    inboxes[1].take(&mut theirs);
    let got: Vec<_> = theirs
        .iter()
        .flat_map(|b| b.iter().map(|(r, p)| (r.from, r.to, r.slot, p.to_vec())))
        .collect();
    assert_eq!(got, [(from, to(there), 9, b"to worker 1".to_vec())]);
    // ...and this worker delivers its own without one.
    let mut own = Vec::new();
    mine.take_incoming(&mut own);
    let got: Vec<_> = own
        .iter()
        .flat_map(|b| b.iter().map(|(r, p)| (r.to, r.slot, p.to_vec())))
        .collect();
    assert_eq!(got, [(to(here), 7, b"to me".to_vec())]);
    let mut again = Vec::new();
    mine.take_incoming(&mut again);
    assert!(again.is_empty(), "delivered once");
    assert_eq!(
        stats.snapshot().handoff,
        [0, 0, 2, 0],
        "two gone, at the sender"
    );
}

#[test]
fn a_full_inbox_drops_the_batch_and_counts_it() {
    let (_poll, inboxes, pools) = setup(51_300);
    let stats = Stats::default();
    let counters = stats.register();
    let mut mine = Handoffs::new(
        0,
        Arc::clone(&inboxes),
        pools.clone(),
        Arc::clone(&counters),
    );
    pools[0].set_owner(51_301, 1, 0);
    inboxes[1]
        .offer(batch(batches::INBOX_DATAGRAMS, 1))
        .unwrap();
    let to = SocketAddr::new([127, 0, 0, 1].into(), 51_301);
    assert!(mine.push(addr("203.0.113.9:1"), to, b"x"));
    assert!(mine.push(addr("203.0.113.9:1"), to, b"y"));
    mine.flush();
    let mut taken = Vec::new();
    inboxes[1].take(&mut taken);
    assert_eq!(taken.len(), 1, "only what was there before");
    assert_eq!(stats.snapshot().handoff, [0, 0, 0, 2], "both counted full");
}
