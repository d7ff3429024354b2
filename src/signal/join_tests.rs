//! The cross-node steps against a fake cluster ([`crate::signal::fake`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::SignalConfig;
use crate::signal::fake::{self, FakeCluster, connect, drain};

fn key(room: &str) -> RoomKey {
    (String::new(), room.to_owned())
}

fn cluster(answer: Result<Admission, Failure>) -> Arc<FakeCluster> {
    Arc::new(FakeCluster::new().joining(answer))
}

/// A hub with `cluster` as its cluster.
fn hub_with(cluster: &Arc<FakeCluster>) -> Arc<Hub> {
    fake::hub(SignalConfig::default(), Some(Arc::clone(cluster)))
}

fn types(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect()
}

async fn settled(outcome: Outcome) -> Result<(), SignalError> {
    match outcome {
        Outcome::Done(result) => result,
        Outcome::Pending(mut pending) => pending.answer().await,
    }
}

#[tokio::test]
async fn admitted_join_lists_the_members_on_other_nodes() {
    let remote = vec![("r1".to_owned(), "node-b/1".to_owned())];
    let fake = cluster(Ok(Admission::Admitted(remote)));
    let hub = hub_with(&fake);
    let mut a = connect(&hub, "a", "");
    let outcome = join(&hub, "a", "", "demo");
    assert!(
        matches!(outcome, Outcome::Pending(_)),
        "a join waits for the cluster"
    );
    settled(outcome).await.unwrap();
    let got = drain(&mut a);
    assert_eq!(types(&got), ["peers"]);
    assert_eq!(got[0]["peers"], json!(["r1"]));
    assert_eq!(got[0]["room"], "demo");
    let max = SignalConfig::default().max_peers_per_room;
    assert_eq!(
        *fake.joins.lock().unwrap(),
        [(key("demo"), None, "a".to_owned(), max)]
    );
    assert_eq!(hub.lock().rooms.membership("a"), Some(key("demo")));
    // The pending join is over: the room lists "a" as a peer, joining no more.
    let rooms = hub.local_rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].peers, ["a"]);
    assert!(rooms[0].joining.is_empty());
}

#[tokio::test]
async fn a_room_full_across_nodes_refuses_the_join() {
    let fake = cluster(Ok(Admission::Full(4)));
    let hub = hub_with(&fake);
    let mut a = connect(&hub, "a", "");
    let error = settled(join(&hub, "a", "", "demo")).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::RoomFull);
    assert_eq!(
        error.message,
        "room \"demo\" has 4 peers, the most it holds"
    );
    assert!(drain(&mut a).is_empty(), "no peers reply");
    assert_eq!(hub.lock().rooms.membership("a"), None);
    assert!(hub.local_rooms().is_empty(), "nothing left pending");
}

#[tokio::test]
async fn with_the_link_down_the_join_is_decided_here() {
    let fake = cluster(Err(Failure::Down));
    let hub = hub_with(&fake);
    let mut a = connect(&hub, "a", "");
    let mut b = connect(&hub, "b", "");
    settled(join(&hub, "a", "", "demo")).await.unwrap();
    settled(join(&hub, "b", "", "demo")).await.unwrap();
    assert_eq!(types(&drain(&mut a)), ["peers", "new_peer"]);
    let got = drain(&mut b);
    assert_eq!(types(&got), ["peers"]);
    assert_eq!(got[0]["peers"], json!(["a"]));
    assert_eq!(
        fake.joins.lock().unwrap().len(),
        2,
        "the cluster was asked first"
    );
}

#[tokio::test]
async fn a_link_broken_during_the_join_is_unavailable() {
    let fake = cluster(Err(Failure::Broken));
    let hub = hub_with(&fake);
    let mut a = connect(&hub, "a", "");
    let error = settled(join(&hub, "a", "", "demo")).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(error.message.contains("broke during the join"), "{error:?}");
    assert!(drain(&mut a).is_empty());
    assert_eq!(hub.lock().rooms.membership("a"), None);
    assert!(hub.local_rooms().is_empty());
}

#[tokio::test]
async fn without_a_cluster_a_join_is_done_at_once() {
    let hub = fake::hub(SignalConfig::default(), None);
    let mut a = connect(&hub, "a", "");
    let Outcome::Done(result) = join(&hub, "a", "", "demo") else {
        panic!("no cluster: nothing to wait for");
    };
    result.unwrap();
    assert_eq!(types(&drain(&mut a)), ["peers"]);
}

#[tokio::test]
async fn the_cluster_hears_the_room_left_and_not_a_rejoin() {
    let fake = cluster(Ok(Admission::Admitted(Vec::new())));
    let hub = hub_with(&fake);
    let _a = connect(&hub, "a", "");
    settled(join(&hub, "a", "", "demo")).await.unwrap();
    // The same room again: nothing for the other nodes.
    settled(join(&hub, "a", "", "demo")).await.unwrap();
    assert_eq!(fake.joins.lock().unwrap().len(), 1);
    settled(join(&hub, "a", "", "other")).await.unwrap();
    let joins = fake.joins.lock().unwrap().clone();
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[1].0, key("other"));
    assert_eq!(joins[1].1, Some(key("demo")), "the room it leaves for it");
}

#[tokio::test(start_paused = true)]
async fn a_join_waits_for_the_links_snapshot_to_be_written() {
    let fake = cluster(Ok(Admission::Admitted(Vec::new())));
    let hub = hub_with(&fake);
    let _a = connect(&hub, "a", "");
    let snapshot = fake.snapshot().await;
    let Outcome::Pending(mut pending) = join(&hub, "a", "", "demo") else {
        panic!("a join with a cluster waits");
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(fake.joins.lock().unwrap().is_empty(), "Redis not asked yet");
    assert!(hub.local_rooms().is_empty(), "the hub not changed yet");
    drop(snapshot);
    pending.answer().await.unwrap();
    assert_eq!(hub.lock().rooms.membership("a"), Some(key("demo")));
}

#[tokio::test]
async fn leaving_tells_the_other_nodes_and_the_room() {
    let fake = cluster(Ok(Admission::Admitted(Vec::new())));
    let hub = hub_with(&fake);
    let _a = connect(&hub, "a", "");
    let mut b = connect(&hub, "b", "");
    settled(join(&hub, "a", "", "demo")).await.unwrap();
    settled(join(&hub, "b", "", "demo")).await.unwrap();
    drain(&mut b);
    settled(leave(&hub, "a")).await.unwrap();
    assert_eq!(types(&drain(&mut b)), ["remove_peer"]);
    assert_eq!(
        *fake.leaves.lock().unwrap(),
        [(key("demo"), "a".to_owned())]
    );
    // A connection that goes: out of its room, and out of the hub.
    disconnect(&hub, "b").await;
    assert_eq!(fake.leaves.lock().unwrap().len(), 2);
    assert_eq!(hub.counts(), (1, 0), "only a, in no room");
}

/// `a` in room demo on this node, `r1` in it on node-b.
async fn with_remote_peer(fake: &Arc<FakeCluster>) -> Arc<Hub> {
    *fake.join_answer.lock().unwrap() = Ok(Admission::Admitted(vec![(
        "r1".to_owned(),
        "node-b/1".to_owned(),
    )]));
    let hub = hub_with(fake);
    let _ = connect(&hub, "a", "");
    settled(join(&hub, "a", "", "demo")).await.unwrap();
    hub
}

const OFFER: &str = r#"{"type":"offer","to":"r1","sdp":"v=0"}"#;

#[tokio::test]
async fn a_relay_to_a_remote_peer_goes_to_its_node_with_from() {
    let fake = Arc::new(FakeCluster::new());
    let hub = with_remote_peer(&fake).await;
    settled(relay(&hub, "a", "r1", OFFER, 65536)).await.unwrap();
    let relays = fake.relays.lock().unwrap().clone();
    assert_eq!(relays.len(), 1);
    let (node, envelope) = &relays[0];
    assert_eq!(node, "node-b/1");
    assert_eq!((envelope.ns.as_str(), envelope.room.as_str()), ("", "demo"));
    assert_eq!(envelope.to, "r1");
    assert_eq!(envelope.text, protocol::relayed(OFFER, "a"));
    assert_eq!(hub.counters.relayed.load(Relaxed), 1);
}

#[tokio::test]
async fn a_relay_to_a_dead_node_or_over_a_down_link_is_refused() {
    let fake = Arc::new(FakeCluster::new());
    let hub = with_remote_peer(&fake).await;
    *fake.relay_answer.lock().unwrap() = Ok(false);
    let error = settled(relay(&hub, "a", "r1", OFFER, 65536))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownPeer);
    assert!(error.message.contains("its node is gone"), "{error:?}");
    *fake.relay_answer.lock().unwrap() = Err(Failure::Down);
    let error = settled(relay(&hub, "a", "r1", OFFER, 65536))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert_eq!(hub.counters.relayed.load(Relaxed), 0);
}

#[tokio::test]
async fn a_relay_too_large_with_from_never_reaches_the_cluster() {
    let fake = Arc::new(FakeCluster::new());
    let hub = with_remote_peer(&fake).await;
    let error = settled(relay(&hub, "a", "r1", OFFER, OFFER.len()))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::TooLarge);
    assert!(fake.relays.lock().unwrap().is_empty());
    assert_eq!(hub.counters.relays_too_large.load(Relaxed), 1);
}
