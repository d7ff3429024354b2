//! Rooms and relaying, and the heartbeat.

use super::*;

// ---------------------------------------------------------------------------------------------
// Rooms and relaying
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn join_lists_peers_and_announces_the_newcomer() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("lobby").await;
    assert!(ja.peers.is_empty(), "first in the room: {}", ja.reply);

    let mut b = relay.connect("/ws").await;
    let jb = b.join("lobby").await;
    assert_eq!(jb.peers, std::slice::from_ref(&ja.you));
    let news = a.expect("new_peer").await;
    assert_eq!(news["id"], jb.you.as_str());

    let mut c = relay.connect("/ws").await;
    let jc = c.join("lobby").await;
    let mut peers = jc.peers.clone();
    peers.sort();
    let mut expected = vec![ja.you.clone(), jb.you.clone()];
    expected.sort();
    assert_eq!(peers, expected);
    assert_eq!(a.expect("new_peer").await["id"], jc.you.as_str());
    assert_eq!(b.expect("new_peer").await["id"], jc.you.as_str());
    c.silent(QUIET).await; // no new_peer about oneself

    // IDs are distinct and not a counter: no two share a prefix.
    let mut ids = vec![ja.you, jb.you, jc.you];
    for room in ["x", "y", "z", "w", "v"] {
        ids.push(relay.connect("/ws").await.join(room).await.you);
    }
    for (i, x) in ids.iter().enumerate() {
        for y in &ids[i + 1..] {
            assert_ne!(x[..8], y[..8], "IDs {x} and {y} look sequential");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offer_answer_and_candidate_arrive_with_from_and_nothing_else_changed() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("call").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("call").await;
    a.expect("new_peer").await;
    let mut c = relay.connect("/ws").await;
    c.join("call").await;
    a.expect("new_peer").await;
    b.expect("new_peer").await;

    // A 2 000-character SDP with CRLFs, quotes, backslashes and non-ASCII text.
    let mut sdp =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=\"q\\\"\r\n");
    while sdp.chars().count() < 1990 {
        sdp.push_str("a=fmtp:111 minptime=10;useinbandfec=1 é☃\r\n");
    }
    let sdp: String = sdp.chars().take(2000).collect();
    assert_eq!(sdp.chars().count(), 2000);

    // The server sets `from`; a message that brings its own is refused (see queues.rs).
    a.send(json!({"type": "offer", "to": jb.you, "from": "forged-sender"}))
        .await;
    a.expect_error("bad_message").await;

    let offer = json!({
        "type": "offer",
        "to": jb.you,
        "sdp": {"type": "offer", "sdp": sdp},
        "meta": {
            "nested": [1, -2, 3.5, true, null, {"deep": ["x", {"deeper": "\u{1F600}"}]}],
            "big": 18_446_744_073_709_551_615u64,
            "empty": {},
            "tab\tkey": "line\nbreak"
        }
    });
    a.send(offer.clone()).await;
    let got = b.expect("offer").await;
    assert_eq!(got["from"], ja.you.as_str(), "from is the real sender");
    let mut expected = offer;
    expected["from"] = json!(ja.you);
    assert_eq!(got, expected, "fields other than from must be untouched");
    assert_eq!(
        got["sdp"]["sdp"].as_str().unwrap().as_bytes(),
        sdp.as_bytes()
    );

    let answer = json!({"type": "answer", "to": ja.you, "sdp": {"type": "answer", "sdp": "v=0\r\n"}, "n": 7});
    b.send(answer.clone()).await;
    let got = a.expect("answer").await;
    let mut expected = answer;
    expected["from"] = json!(jb.you);
    assert_eq!(got, expected);

    let candidate = json!({
        "type": "candidate",
        "to": jb.you,
        "candidate": {
            "candidate": "candidate:842163049 1 udp 1677729535 192.0.2.7 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": null
        }
    });
    a.send(candidate.clone()).await;
    let got = b.expect("candidate").await;
    let mut expected = candidate;
    expected["from"] = json!(ja.you);
    assert_eq!(got, expected);

    // Only the addressee hears any of it.
    c.silent(QUIET).await;
    a.silent(Duration::ZERO).await;
    b.silent(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relaying_to_a_peer_elsewhere_or_nowhere_is_unknown_peer() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.join("one").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("two").await;

    for typ in ["offer", "answer", "candidate"] {
        a.send(json!({"type": typ, "to": jb.you, "sdp": "v=0"}))
            .await;
        a.expect_error("unknown_peer").await;
        a.send(json!({"type": typ, "to": MADE_UP_ID, "sdp": "v=0"}))
            .await;
        a.expect_error("unknown_peer").await;
    }
    b.silent(QUIET).await;
    a.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relaying_before_join_is_not_joined() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    for typ in ["offer", "answer", "candidate"] {
        a.send(json!({"type": typ, "to": MADE_UP_ID, "sdp": "v=0"}))
            .await;
        a.expect_error("not_joined").await;
    }
    a.ping_pong().await;
    a.join("later").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_bad_message_and_the_connection_stays() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("r").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("r").await;
    a.expect("new_peer").await;

    let bad = [
        "this is not JSON".to_owned(),
        "{\"type\": \"join\", \"room\": ".to_owned(),
        "[1, 2, 3]".to_owned(),
        "[{\"type\": \"ping\"}]".to_owned(),
        "\"ping\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        json!({"room": "r"}).to_string(),
        json!({"type": "join"}).to_string(),
        json!({"type": "join", "room": 7}).to_string(),
        json!({"type": "offer", "sdp": "v=0"}).to_string(),
        json!({"type": "offer", "to": 5, "sdp": "v=0"}).to_string(),
    ];
    for text in &bad {
        b.send_text(text).await;
        let err = b.recv().await;
        assert_eq!(err["type"], "error", "{text} → {err}");
        assert_eq!(err["code"], "bad_message", "{text} → {err}");
        assert!(err["message"].is_string(), "{err}");
    }
    a.silent(QUIET).await;
    b.ping_pong().await;

    // Still in the room: a relays to b.
    a.send(json!({"type": "offer", "to": jb.you, "sdp": "v=0"}))
        .await;
    assert_eq!(b.expect("offer").await["from"], ja.you.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_type_is_reported_and_the_connection_stays() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.send(json!({"type": "dance"})).await;
    a.expect_error("unknown_type").await;
    a.join("r").await;
    a.send(json!({"type": "dance", "to": MADE_UP_ID})).await;
    a.expect_error("unknown_type").await;
    a.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_is_answered_with_pong_in_and_out_of_a_room() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.ping_pong().await;
    a.join("r").await;
    a.ping_pong().await;
    a.silent(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_room_refuses_the_next_joiner() {
    let relay = Relay::start("max-peers-per-room = 2", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("full").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("full").await;
    a.expect("new_peer").await;

    let mut c = relay.connect("/ws").await;
    c.send(json!({"type": "join", "room": "full"})).await;
    c.expect_error("room_full").await;
    a.silent(QUIET).await;
    b.silent(Duration::ZERO).await;
    c.send(json!({"type": "offer", "to": ja.you, "sdp": "v=0"}))
        .await;
    c.expect_error("not_joined").await;

    // A place freed by a leaver is taken by the next joiner.
    a.send(json!({"type": "leave"})).await;
    assert_eq!(b.expect("remove_peer").await["id"], ja.you.as_str());
    let jc = c.join("full").await;
    assert_eq!(jc.peers, [jb.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_the_size_limit_is_too_large_and_the_connection_stays() {
    let relay = Relay::start("max-message-size = 4096", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("r").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("r").await;
    a.expect("new_peer").await;

    let sized = |len: usize| {
        let mut msg = json!({"type": "offer", "to": jb.you, "sdp": ""});
        let pad = len - msg.to_string().len();
        msg["sdp"] = json!("s".repeat(pad));
        assert_eq!(msg.to_string().len(), len);
        msg
    };
    // Under the limit: relayed intact.
    let fits = sized(4000);
    a.send(fits.clone()).await;
    let got = b.expect("offer").await;
    assert_eq!(got["sdp"], fits["sdp"]);
    assert_eq!(got["from"], ja.you.as_str());

    // Over it: an error for the sender, nothing for the addressee.
    a.send(sized(5000)).await;
    a.expect_error("too_large").await;
    b.silent(QUIET).await;

    a.ping_pong().await;
    a.send(fits.clone()).await;
    assert_eq!(b.expect("offer").await["sdp"], fits["sdp"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_past_the_rate_is_rate_limited_and_the_connection_recovers() {
    const RATE: usize = 10;
    let relay = Relay::start(&format!("messages-per-second = {RATE}"), "");
    let mut a = relay.connect("/ws").await;
    let sent = Instant::now();
    for _ in 0..4 * RATE {
        a.stream
            .feed(Message::text(json!({"type": "ping"}).to_string()))
            .await
            .unwrap();
    }
    within("flush", a.stream.flush()).await.unwrap();

    // Every ping is answered: a pong, or rate_limited past the bucket.
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < 4 * RATE {
        let text = within("an answer", a.next_text()).await;
        let text = text.unwrap_or_else(|| panic!("closed after a burst\n{}", relay.server.log()));
        let msg: Value = serde_json::from_str(&text).unwrap();
        match (msg["type"].as_str(), msg["code"].as_str()) {
            (Some("pong"), _) => pongs += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply to a burst of pings: {msg}"),
        }
    }
    // The bucket refills while the burst is served: a slow server lets a few more through.
    let refilled = (sent.elapsed().as_secs_f64() * RATE as f64).ceil() as usize;
    assert!(limited >= 1, "no rate_limited after {} pings", 4 * RATE);
    assert!(
        (RATE..=RATE + 5usize.max(refilled)).contains(&pongs),
        "{pongs} pongs for a burst of {} at {RATE}/s with a burst of {RATE}",
        4 * RATE
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..RATE / 2 {
        a.ping_pong().await;
    }
    a.join("after-the-storm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leave_and_close_announce_remove_peer_and_empty_rooms_vanish() {
    let relay = Relay::start("", "");
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut ws = relay.connect("/ws").await;
        ids.push(ws.join("r").await.you);
        clients.push(ws);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        for _ in i + 1..4 {
            ws.expect("new_peer").await;
        }
    }
    let [mut a, mut b, mut c, mut d] = <[Ws; 4]>::try_from(clients).ok().unwrap();

    // An explicit leave: the connection stays, the others are told.
    a.send(json!({"type": "leave"})).await;
    for ws in [&mut b, &mut d] {
        assert_eq!(ws.expect("remove_peer").await["id"], ids[0].as_str());
    }
    a.ping_pong().await;

    // A close handshake.
    within("close", b.stream.close(None)).await.unwrap();
    assert_eq!(d.expect("remove_peer").await["id"], ids[1].as_str());
    assert_eq!(c.expect("remove_peer").await["id"], ids[0].as_str());
    assert_eq!(c.expect("remove_peer").await["id"], ids[1].as_str());

    // A TCP close without a close frame.
    drop(c);
    assert_eq!(d.expect("remove_peer").await["id"], ids[2].as_str());

    d.send(json!({"type": "leave"})).await;
    d.silent(QUIET).await;

    let mut e = relay.connect("/ws").await;
    let je = e.join("r").await;
    assert!(
        je.peers.is_empty(),
        "the emptied room lingers: {}",
        je.reply
    );
    let ja = a.join("r").await;
    assert_eq!(ja.peers, [je.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_another_room_leaves_the_first() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("first").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("first").await;
    a.expect("new_peer").await;

    let ja2 = a.join("second").await;
    assert!(ja2.peers.is_empty(), "{}", ja2.reply);
    assert_eq!(b.expect("remove_peer").await["id"], ja.you.as_str());

    for to in [&ja.you, &ja2.you] {
        b.send(json!({"type": "offer", "to": to, "sdp": "v=0"}))
            .await;
        b.expect_error("unknown_peer").await;
    }
    a.silent(QUIET).await;

    let mut c = relay.connect("/ws").await;
    assert_eq!(c.join("first").await.peers, [jb.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_keep_rooms_of_the_same_name_apart() {
    let relay = Relay::start("", "");
    let mut a1 = relay.connect("/ws/a").await;
    let ja1 = a1.join("lobby").await;

    let mut b1 = relay.connect("/ws/b").await;
    let jb1 = b1.join("lobby").await;
    assert!(jb1.peers.is_empty(), "saw another namespace: {}", jb1.reply);
    let mut root = relay.connect("/ws").await;
    let jr = root.join("lobby").await;
    assert!(jr.peers.is_empty(), "saw another namespace: {}", jr.reply);
    a1.silent(QUIET).await;

    b1.send(json!({"type": "offer", "to": ja1.you, "sdp": "v=0"}))
        .await;
    b1.expect_error("unknown_peer").await;
    a1.send(json!({"type": "offer", "to": jb1.you, "sdp": "v=0"}))
        .await;
    a1.expect_error("unknown_peer").await;
    a1.send(json!({"type": "offer", "to": jr.you, "sdp": "v=0"}))
        .await;
    a1.expect_error("unknown_peer").await;

    // The same namespace does meet.
    let mut a2 = relay.connect("/ws/a").await;
    let ja2 = a2.join("lobby").await;
    assert_eq!(ja2.peers, std::slice::from_ref(&ja1.you));
    assert_eq!(a1.expect("new_peer").await["id"], ja2.you.as_str());
    b1.silent(QUIET).await;
    root.silent(Duration::ZERO).await;

    drop(a1);
    assert_eq!(a2.expect("remove_peer").await["id"], ja1.you.as_str());
    b1.silent(QUIET).await;
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_answering_pings_is_dropped_and_announced() {
    let relay = Relay::start(
        "heartbeat-interval = \"1s\"\nheartbeat-timeout = \"3s\"",
        "",
    );
    let mut honest = relay.connect("/ws").await;
    let jh = honest.join("hb").await;
    let mut mute = relay.connect("/ws").await;
    let jm = mute.join("hb").await;
    let joined = Instant::now();
    assert_eq!(honest.expect("new_peer").await["id"], jm.you.as_str());

    // `mute` is never polled from here on, so it never answers a Ping with a Pong.
    let gone = honest.recv_within(Duration::from_secs(3 + 4)).await;
    assert_eq!(gone["type"], "remove_peer", "{gone}");
    assert_eq!(gone["id"], jm.you.as_str());
    let after = joined.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "dropped after {after:?}, well before heartbeat-timeout"
    );
    assert!(
        mute.closed_by_server().await,
        "the mute connection stays open"
    );
    // Counted, and gone from the registry: one peer in one room is left.
    assert_eq!(relay.metric("rturn_signal_heartbeat_drops_total"), 1.0);
    let health: Value = serde_json::from_str(&relay.get("/healthz").body).unwrap();
    assert_eq!(
        (health["peers"].as_u64(), health["rooms"].as_u64()),
        (Some(1), Some(1))
    );

    // The honest client, which reads and so answers every Ping, is still there more than
    // two timeouts after it joined.
    honest.silent(Duration::from_secs(4)).await;
    honest.ping_pong().await;
    let mut late = relay.connect("/ws").await;
    assert_eq!(late.join("hb").await.peers, [jh.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn signaling_sessions_survive_a_reload_and_new_limits_apply() {
    let mut relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let mut b = relay.connect("/ws").await;
    a.join("reload").await;
    let b_id = b.join("reload").await.you;
    a.expect("new_peer").await;

    // The room limit drops to 2 on SIGHUP.
    let config = std::fs::read_to_string(&relay.server.config_path).unwrap();
    let config = config.replace("[signal]\n", "[signal]\nmax-peers-per-room = 2\n");
    assert!(config.contains("max-peers-per-room = 2"), "{config}");
    std::fs::write(&relay.server.config_path, config).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(relay.server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    tokio::task::block_in_place(|| {
        relay
            .server
            .wait_line(|l| l.contains("configuration reloaded"))
    });

    // Both sessions live on and still relay to each other.
    a.send(json!({"type": "offer", "to": b_id, "sdp": "after reload"}))
        .await;
    assert_eq!(b.expect("offer").await["sdp"], "after reload");
    a.ping_pong().await;
    // The new limit holds for the next joiner.
    let mut c = relay.connect("/ws").await;
    c.send(json!({"type": "join", "room": "reload"})).await;
    c.expect_error("room_full").await;
}
