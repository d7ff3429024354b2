//! Rooms across nodes: two rturn processes sharing one real Redis (`redis-server`, started
//! on its own loopback port by the fixture) behave as one signaling relay — membership,
//! relays and room limits cross nodes; a killed node's peers are announced gone within
//! `presence-ttl`; a Redis outage leaves local rooms working, is reported, and heals.

use super::*;
use rturn::testkit::redis::Redis;

/// `presence-ttl` of the test nodes that die or lose Redis.
const TTL: Duration = Duration::from_secs(2);
/// `presence-ttl` of the other test nodes: they sync every 15 s, longer than any wait for a
/// message, so joins, leaves and relays must travel as events, not by sync.
pub(super) const EVENTS_ONLY: Duration = Duration::from_secs(60);

/// A node of the cluster on `redis` with `presence-ttl` `ttl`.
fn node_with_ttl(redis: &Redis, id: &str, signal: &str, ttl: Duration) -> Relay {
    let ice = format!(
        "\n[cluster]\nredis = \"{}\"\nnode-id = \"{id}\"\npresence-ttl = \"{}s\"\n",
        redis.url(),
        ttl.as_secs()
    );
    let server = Server::start(&relay_config(signal, &ice));
    let http = server.http_addr();
    Relay { server, http }
}

/// Nodes "a" and "b" on `redis`, both connected to it.
pub(super) async fn two_nodes(redis: &Redis, signal: &str, ttl: Duration) -> (Relay, Relay) {
    let (a, b) = (
        node_with_ttl(redis, "a", signal, ttl),
        node_with_ttl(redis, "b", signal, ttl),
    );
    wait_health(&a, "ok").await;
    wait_health(&b, "ok").await;
    (a, b)
}

/// A peer on `node_a` and one on `node_b` in room "call", the first told of the second.
async fn meet_in_call(node_a: &Relay, node_b: &Relay) -> (Ws, Joined, Ws, Joined) {
    let mut a = node_a.connect("/ws").await;
    let ja = a.join("call").await;
    let mut b = node_b.connect("/ws").await;
    let jb = b.join("call").await;
    a.expect("new_peer").await;
    (a, ja, b, jb)
}

/// b offers to a, a answers; then neither hears anything more.
async fn offer_and_answer_then_quiet((a, ja): (&mut Ws, &Joined), (b, jb): (&mut Ws, &Joined)) {
    b.send(json!({"type": "offer", "to": ja.you, "sdp": "after"}))
        .await;
    assert_eq!(a.expect("offer").await["sdp"], "after");
    a.send(json!({"type": "answer", "to": jb.you, "sdp": "back"}))
        .await;
    assert_eq!(b.expect("answer").await["sdp"], "back");
    a.silent(QUIET).await;
    b.silent(Duration::ZERO).await;
}

/// `/healthz` as JSON.
fn health(relay: &Relay) -> Value {
    let response = relay.get("/healthz");
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

/// Waits (bounded) until `/healthz` of `relay` says `status`.
async fn wait_health(relay: &Relay, status: &str) -> Value {
    wait_health_until(relay, |h| h["status"] == status).await
}

/// Waits (bounded) until `/healthz` of `relay` satisfies `wanted`.
async fn wait_health_until(relay: &Relay, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = health(relay);
        if wanted(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {now} after {TIMEOUT:?}\n{}",
            relay.server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_on_two_nodes_meet_and_relay_offer_answer_and_candidate() {
    let redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", EVENTS_ONLY).await;
    assert_eq!(health(&node_a)["cluster"]["redis"], "up");

    let mut a = node_a.connect("/ws").await;
    let ja = a.join("call").await;
    assert!(ja.peers.is_empty(), "{}", ja.reply);
    let mut b = node_b.connect("/ws").await;
    let jb = b.join("call").await;
    assert_eq!(
        jb.peers,
        std::slice::from_ref(&ja.you),
        "B's joiner sees A's peer"
    );
    assert_eq!(a.expect("new_peer").await["id"], jb.you.as_str());

    let offer = json!({"type": "offer", "to": jb.you, "sdp": {"type": "offer", "sdp": "v=0\r\né☃"}, "n": 1.5});
    a.send(offer.clone()).await;
    let mut expected = offer;
    expected["from"] = json!(ja.you);
    assert_eq!(b.expect("offer").await, expected, "untouched but for from");
    let answer =
        json!({"type": "answer", "to": ja.you, "sdp": {"type": "answer", "sdp": "v=0\r\n"}});
    b.send(answer.clone()).await;
    let mut expected = answer;
    expected["from"] = json!(jb.you);
    assert_eq!(a.expect("answer").await, expected);
    let candidate = json!({"type": "candidate", "to": jb.you, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}});
    a.send(candidate.clone()).await;
    let mut expected = candidate;
    expected["from"] = json!(ja.you);
    assert_eq!(b.expect("candidate").await, expected);
    // Byte for byte: the sender's text with `from` spliced in, numbers and escapes as spelt.
    let sent = format!(
        "{{ \"type\":\"offer\", \"to\":\"{}\", \"n\":9e15, \"s\":\"\\u00e9\\r\\n\" }}",
        jb.you
    );
    a.send_text(&sent).await;
    let got = within("the offer", b.next_text()).await.unwrap();
    let from = format!("{{\"from\":\"{}\",", ja.you);
    assert_eq!(got, sent.replacen('{', &from, 1));

    // Same room only, across nodes too: c is on B in another room; namespaces stay apart.
    let mut c = node_b.connect("/ws").await;
    let jc = c.join("other").await;
    assert!(jc.peers.is_empty(), "{}", jc.reply);
    a.send(json!({"type": "offer", "to": jc.you, "sdp": "x"}))
        .await;
    a.expect_error("unknown_peer").await;
    let mut d = node_b.connect("/ws/elsewhere").await;
    assert!(
        d.join("call").await.peers.is_empty(),
        "namespaces never meet"
    );
    c.silent(QUIET).await;

    // Leaving on B is announced on A; a third peer on A sees only who is still there.
    b.send(json!({"type": "leave"})).await;
    assert_eq!(a.expect("remove_peer").await["id"], jb.you.as_str());
    let mut e = node_a.connect("/ws").await;
    assert_eq!(e.join("call").await.peers, std::slice::from_ref(&ja.you));
    a.expect("new_peer").await;
    b.silent(QUIET).await;

    assert_eq!(
        node_a.metric("rturn_cluster_relayed_total{direction=\"out\"}"),
        3.0
    );
    assert_eq!(
        node_b.metric("rturn_cluster_relayed_total{direction=\"in\"}"),
        3.0
    );
    assert_eq!(
        node_b.metric("rturn_cluster_relayed_total{direction=\"out\"}"),
        1.0
    );
    assert_eq!(node_a.metric("rturn_cluster_up"), 1.0);
    assert_eq!(node_a.metric("rturn_cluster_malformed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn room_limits_hold_across_nodes() {
    let redis = Redis::start();
    let limit = "max-peers-per-room = 2";
    let (node_a, node_b) = two_nodes(&redis, limit, EVENTS_ONLY).await;
    let mut a = node_a.connect("/ws").await;
    a.join("x").await;
    let mut b = node_b.connect("/ws").await;
    let jb = b.join("x").await;
    a.expect("new_peer").await;
    for relay in [&node_a, &node_b] {
        let mut late = relay.connect("/ws").await;
        late.send(json!({"type": "join", "room": "x"})).await;
        let refused = late.expect_error("room_full").await;
        assert!(
            refused["message"].as_str().unwrap().contains("2 peers"),
            "{refused}"
        );
        late.ping_pong().await;
        // Another room is not full, and the refused join took no seat.
        late.join("y").await;
    }
    a.silent(QUIET).await;
    // A seat freed on B is free on A.
    drop(b);
    assert_eq!(a.expect("remove_peer").await["id"], jb.you.as_str());
    let mut next = node_a.connect("/ws").await;
    assert_eq!(next.join("x").await.peers.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_s_peers_are_removed_on_the_others_once_its_presence_expires() {
    let redis = Redis::start();
    let (node_a, mut node_b) = two_nodes(&redis, "", TTL).await;
    let mut a = node_a.connect("/ws").await;
    let ja = a.join("call").await;
    let mut b1 = node_b.connect("/ws").await;
    let mut b2 = node_b.connect("/ws").await;
    let gone = [b1.join("call").await.you, b2.join("call").await.you];
    a.expect("new_peer").await;
    a.expect("new_peer").await;

    // SIGKILL: no goodbye reaches Redis or anyone; only the presence key's expiry tells.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node_b.server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    node_b.server.wait_exit();
    let mut removed = Vec::new();
    for _ in 0..2 {
        let m = a.recv_within(TTL * 3).await;
        assert_eq!(m["type"], "remove_peer", "{m}");
        removed.push(m["id"].as_str().unwrap().to_owned());
    }
    let took = killed.elapsed();
    removed.sort();
    let mut expected = gone.to_vec();
    expected.sort();
    assert_eq!(removed, expected);
    eprintln!("remove_peer for a killed node's peers after {took:?} (presence-ttl {TTL:?})");
    // By design within one TTL (the key lives ¾ TTL, refreshed and checked every ¼ TTL);
    // the rest is slack for a loaded machine running two nodes and Redis.
    assert!(took <= TTL + Duration::from_millis(1500), "took {took:?}");
    // The room is A's alone now; a relay to a dead peer is unknown_peer.
    a.send(json!({"type": "offer", "to": gone[0], "sdp": "x"}))
        .await;
    a.expect_error("unknown_peer").await;
    let mut again = node_a.connect("/ws").await;
    assert_eq!(
        again.join("call").await.peers,
        std::slice::from_ref(&ja.you)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_keeps_local_rooms_and_cross_node_relay_resumes_after_it() {
    let mut redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", TTL).await;
    let mut a = node_a.connect("/ws").await;
    let ja = a.join("call").await;
    let mut e = node_a.connect("/ws").await;
    let je = e.join("call").await;
    a.expect("new_peer").await;
    let mut b = node_b.connect("/ws").await;
    let jb = b.join("call").await;
    assert_eq!(jb.peers.len(), 2, "{}", jb.reply);
    a.expect("new_peer").await;
    e.expect("new_peer").await;

    redis.stop();
    let degraded = wait_health(&node_a, "degraded").await;
    assert_eq!(degraded["cluster"]["redis"], "down", "{degraded}");
    assert!(degraded["cluster"]["error"].is_string(), "{degraded}");
    wait_health(&node_b, "degraded").await;
    assert_eq!(node_a.metric("rturn_cluster_up"), 0.0);
    assert!(node_a.metric("rturn_cluster_errors_total") >= 1.0);

    // Local rooms keep working: a newcomer on A meets a, and they relay; e leaves.
    let mut c = node_a.connect("/ws").await;
    let jc = c.join("call").await;
    assert!(jc.peers.contains(&ja.you), "{}", jc.reply);
    assert_eq!(a.expect("new_peer").await["id"], jc.you.as_str());
    a.send(json!({"type": "offer", "to": jc.you, "sdp": "local"}))
        .await;
    assert_eq!(c.expect("offer").await["sdp"], "local");
    e.send(json!({"type": "leave"})).await;
    assert_eq!(a.expect("remove_peer").await["id"], je.you.as_str());
    assert_eq!(c.expect("remove_peer").await["id"], je.you.as_str());
    // Across nodes there is no way now, and the sender is told so.
    a.send(json!({"type": "offer", "to": jb.you, "sdp": "lost"}))
        .await;
    a.expect_error("unavailable").await;

    redis.restart();
    wait_health(&node_a, "ok").await;
    wait_health(&node_b, "ok").await;
    // A registers its peers again: b learns about c, who joined during the outage.
    assert_eq!(b.expect("new_peer").await["id"], jc.you.as_str());
    a.send(json!({"type": "offer", "to": jb.you, "sdp": "again"}))
        .await;
    assert_eq!(b.expect("offer").await["sdp"], "again");
    b.send(json!({"type": "answer", "to": jc.you, "sdp": "to c"}))
        .await;
    assert_eq!(c.expect("answer").await["sdp"], "to c");
    // e, who left while nobody could be told, is gone for b once the grace for nodes
    // registering again after Redis lost its data (one TTL) is over.
    let m = b.recv_within(TTL * 3).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("remove_peer"), Some(je.you.as_str())),
        "{m}"
    );
    // Nobody else was announced gone and back: the outage was invisible to the room.
    a.silent(TTL * 2).await;
    b.silent(Duration::ZERO).await;
    c.silent(Duration::ZERO).await;
    assert_eq!(
        node_a.metric("rturn_cluster_connects_total"),
        2.0,
        "one session before the outage, one after"
    );
    assert_eq!(node_b.metric("rturn_cluster_connects_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_with_the_same_node_id_is_kept_out_until_the_first_is_gone() {
    let redis = Redis::start();
    let mut first = node_with_ttl(&redis, "same", "", TTL);
    wait_health(&first, "ok").await;
    let second = node_with_ttl(&redis, "same", "", TTL);
    let refused = wait_health_until(&second, |h| h["cluster"]["error"].is_string()).await;
    assert_eq!(refused["status"], "degraded", "{refused}");
    let error = refused["cluster"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("held by another running node"), "{refused}");
    assert_eq!(
        health(&first)["status"],
        "ok",
        "the first keeps its node-id"
    );
    // Peers on the two do not meet through Redis (they would mistake each other's for
    // their own): the second serves its own alone.
    let mut p = first.connect("/ws").await;
    p.join("call").await;
    let mut q = second.connect("/ws").await;
    assert!(q.join("call").await.peers.is_empty());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    first.server.wait_exit();
    // The dead session's hold lapses with its presence; the second takes the node-id.
    wait_health(&second, "ok").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_on_rturns_redis_channels_is_counted_and_reaches_nobody() {
    let redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", EVENTS_ONLY).await;
    let (mut a, ja, mut b, jb) = meet_in_call(&node_a, &node_b).await;

    // Not rturn's: heard by both nodes, dropped and counted.
    let junk = [
        "not json",
        "{\"e\":\"joined\"}",
        "{\"e\":\"exploded\",\"node\":\"x/1\"}",
    ];
    for text in junk {
        assert_eq!(redis.command(&["PUBLISH", "rturn:events", text]), ":2");
    }
    assert_eq!(redis.command(&["PUBLISH", "rturn:to:a", "[1,2]"]), ":1");
    // Well-formed but for a peer not in that room, or no peer at all: delivered to nobody.
    let stray = json!({"ns": "", "room": "other", "to": ja.you, "text": "{\"type\":\"offer\"}"});
    let nobody = json!({"ns": "", "room": "call", "to": "0123", "text": "{}"});
    for envelope in [stray, nobody] {
        assert_eq!(
            redis.command(&["PUBLISH", "rturn:to:a", &envelope.to_string()]),
            ":1"
        );
    }

    // Each node has heard everything by the time a relay it sends afterwards round-trips.
    offer_and_answer_then_quiet((&mut a, &ja), (&mut b, &jb)).await;
    assert_eq!(node_a.metric("rturn_cluster_malformed_total"), 4.0);
    assert_eq!(node_b.metric("rturn_cluster_malformed_total"), 3.0);
    assert_eq!(
        node_a.metric("rturn_cluster_relayed_total{direction=\"in\"}"),
        1.0
    );
    assert_eq!(node_a.metric("rturn_cluster_up"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn flushed_scripts_are_loaded_again_without_ending_the_session() {
    let redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", TTL).await;
    let mut a = node_a.connect("/ws").await;
    a.join("call").await;
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK");
    // Two syncs later (every ¼ TTL), on both nodes, the link is still its first session.
    tokio::time::sleep(TTL / 2 + Duration::from_millis(200)).await;
    let mut b = node_b.connect("/ws").await;
    assert_eq!(b.join("call").await.peers.len(), 1);
    a.expect("new_peer").await;
    for node in [&node_a, &node_b] {
        assert_eq!(node.metric("rturn_cluster_connects_total"), 1.0);
        assert_eq!(node.metric("rturn_cluster_errors_total"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_without_data_loss_drops_the_old_session_and_nobody_notices() {
    let redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", EVENTS_ONLY).await;
    let (mut a, ja, mut b, jb) = meet_in_call(&node_a, &node_b).await;

    // Every node's connections drop; Redis keeps its data and answers again at once.
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    let deadline = Instant::now() + TIMEOUT;
    for node in [&node_a, &node_b] {
        while node.metric("rturn_cluster_connects_total") < 2.0
            || node.metric("rturn_cluster_up") < 1.0
        {
            assert!(
                Instant::now() < deadline,
                "no reconnect\n{}",
                node.server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // One presence key per node: the old sessions' went at once, not a TTL later, and with
    // them any entry of theirs.
    let presence = redis.command(&["KEYS", "rturn:node:*"]);
    assert!(presence.starts_with("*2\r\n"), "{presence:?}");
    // The room never noticed: no remove_peer, no second new_peer, and relays flow.
    offer_and_answer_then_quiet((&mut a, &ja), (&mut b, &jb)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_delays_nothing_for_long_and_is_reported() {
    let redis = Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", TTL).await;
    let mut a = node_a.connect("/ws").await;
    let ja = a.join("call").await;

    redis.freeze(true);
    // A join caught by the hang gets an answer within the 2 s command timeout: `unavailable`
    // while the link is found broken, a local join once it is known to be down.
    let mut c = node_a.connect("/ws").await;
    let started = Instant::now();
    c.send(json!({"type": "join", "room": "call"})).await;
    let first = c.recv_within(Duration::from_secs(4)).await;
    assert!(
        first["type"] == "peers" || first["code"] == "unavailable",
        "{first}"
    );
    if first["type"] != "peers" {
        wait_health(&node_a, "degraded").await;
        let joined = c.join("call").await;
        assert_eq!(joined.peers, std::slice::from_ref(&ja.you));
    }
    assert!(started.elapsed() < TIMEOUT, "took {:?}", started.elapsed());
    assert_eq!(a.expect("new_peer").await["type"], "new_peer");
    let degraded = wait_health(&node_b, "degraded").await;
    assert!(degraded["cluster"]["error"].is_string(), "{degraded}");

    redis.freeze(false);
    wait_health(&node_a, "ok").await;
    wait_health(&node_b, "ok").await;
    let mut b = node_b.connect("/ws").await;
    assert_eq!(b.join("call").await.peers.len(), 2);
}
