//! The SkyRTC dialect on `/skyrtc`: a client of our own speaking `{"eventName":…,"data":…}`
//! as the articles' SkyRTC client does, against the message shapes the issue names; peers
//! of both dialects in one room, on one node and across a cluster; refusals as `_error`
//! events on a connection that lives on; the same tokens, heartbeat and room limit as `/ws`.

use super::*;

/// A client speaking the SkyRTC dialect.
struct Sky {
    ws: Ws,
}

impl Relay {
    /// A SkyRTC client on `path` (`/skyrtc…`).
    async fn sky(&self, path: &str) -> Sky {
        Sky {
            ws: self.connect(path).await,
        }
    }
}

/// What `_peers` answered.
struct SkyJoined {
    you: String,
    connections: Vec<String>,
}

impl Sky {
    /// Sends `eventName` with `data`.
    async fn emit(&mut self, event: &str, data: Value) {
        self.ws
            .send(json!({"eventName": event, "data": data}))
            .await;
    }

    /// The next event, which must be `event`; its `data`.
    async fn on(&mut self, event: &str) -> Value {
        let msg = self.ws.recv().await;
        assert_eq!(msg["eventName"], event, "expected {event}, got {msg}");
        assert!(msg["data"].is_object(), "no data object: {msg}");
        msg["data"].clone()
    }

    /// The next event, which must be `_error` with `code` and a message for humans.
    async fn refused(&mut self, code: &str) -> Value {
        let data = self.on("_error").await;
        assert_eq!(data["code"], code, "{data}");
        assert!(
            data["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {data}"
        );
        data
    }

    /// `__ping` answered by `_pong`: the connection is open and served.
    async fn alive(&mut self) {
        self.emit("__ping", json!({})).await;
        self.on("_pong").await;
    }

    /// `__join` of `room` (`None`: without one), answered by `_peers`.
    async fn join(&mut self, room: Option<&str>) -> SkyJoined {
        let data = match room {
            Some(room) => json!({"room": room}),
            None => json!({}),
        };
        self.emit("__join", data).await;
        let peers = self.on("_peers").await;
        let you = peers["you"].as_str().unwrap_or_else(|| panic!("{peers}"));
        assert_unguessable(you);
        let connections: Vec<String> = (peers["connections"].as_array())
            .unwrap_or_else(|| panic!("connections is not an array: {peers}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(!connections.iter().any(|c| c == you), "{peers}");
        SkyJoined {
            you: you.to_owned(),
            connections,
        }
    }

    /// `__ice_candidate` from this client (`me`) to the `/ws` client `w` (`to`), which
    /// gets it as a `/ws` candidate with `sdpMLineIndex` from `label`.
    async fn candidate_to_ws(&mut self, me: &str, w: &mut Ws, to: &str) {
        self.emit(
            "__ice_candidate",
            json!({"socketId": to, "label": 0, "candidate": CANDIDATE}),
        )
        .await;
        assert_eq!(
            w.recv().await,
            json!({"type": "candidate", "from": me, "to": to,
                "candidate": {"candidate": CANDIDATE, "sdpMLineIndex": 0}})
        );
    }

    /// A `/ws` answer from `w` (`from`) to this client (`me`), which gets it as `_answer`.
    async fn answer_from_ws(&mut self, me: &str, w: &mut Ws, from: &str) {
        w.send(json!({"type": "answer", "to": me, "sdp": SDP}))
            .await;
        assert_eq!(
            self.on("_answer").await,
            json!({"sdp": {"type": "answer", "sdp": SDP}, "socketId": from})
        );
    }
}

const SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=\"é\\\"\r\n";
const CANDIDATE: &str = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host";

/// Join, `_new_peer`, offer, answer and candidates (with `sdpMLineIndex` from `label`) and
/// `_remove_peer` on leaving and on closing, between SkyRTC clients.
#[tokio::test(flavor = "multi_thread")]
async fn skyrtc_peers_meet_and_exchange_offer_answer_and_candidates() {
    let relay = Relay::start("", "");
    let mut a = relay.sky("/skyrtc").await;
    let ja = a.join(None).await;
    assert!(ja.connections.is_empty());
    let mut b = relay.sky("/skyrtc").await;
    // An empty room is the default room too, as SkyRTC's `data.room || "__default"`.
    let jb = b.join(Some("")).await;
    assert_eq!(jb.connections, std::slice::from_ref(&ja.you));
    assert_eq!(a.on("_new_peer").await, json!({"socketId": jb.you}));
    b.ws.silent(QUIET).await; // no _new_peer about oneself

    // As the articles' client sends them: the session description, and the candidate's
    // sdpMLineIndex as `label`.
    let offer = json!({"type": "offer", "sdp": SDP});
    b.emit("__offer", json!({"socketId": ja.you, "sdp": offer}))
        .await;
    assert_eq!(
        a.on("_offer").await,
        json!({"sdp": offer, "socketId": jb.you})
    );
    let answer = json!({"type": "answer", "sdp": SDP});
    a.emit("__answer", json!({"socketId": jb.you, "sdp": answer}))
        .await;
    assert_eq!(
        b.on("_answer").await,
        json!({"sdp": answer, "socketId": ja.you})
    );
    for label in [0, 1] {
        a.emit(
            "__ice_candidate",
            json!({"socketId": jb.you, "label": label, "candidate": CANDIDATE}),
        )
        .await;
        assert_eq!(
            b.on("_ice_candidate").await,
            json!({"label": label, "sdpMLineIndex": label, "candidate": CANDIDATE,
                "socketId": ja.you})
        );
    }

    // A third peer in another room neither sees nor is seen.
    let mut c = relay.sky("/skyrtc").await;
    let jc = c.join(Some("elsewhere")).await;
    assert!(jc.connections.is_empty());

    b.emit("__leave", json!({})).await;
    assert_eq!(a.on("_remove_peer").await, json!({"socketId": jb.you}));
    // Back in, then gone by closing.
    let jb = b.join(None).await;
    assert_eq!(jb.connections, std::slice::from_ref(&ja.you));
    assert_eq!(a.on("_new_peer").await["socketId"], jb.you.as_str());
    drop(b);
    assert_eq!(a.on("_remove_peer").await, json!({"socketId": jb.you}));
    c.ws.silent(QUIET).await;
    a.alive().await;
}

/// A `/ws` peer and a SkyRTC peer in one room: each sees the other and gets the other's
/// offer, answer and candidate in its own dialect.
#[tokio::test(flavor = "multi_thread")]
async fn ws_and_skyrtc_peers_share_a_room_both_ways() {
    let relay = Relay::start("", "");
    let mut w = relay.connect("/ws/tenant").await;
    let jw = w.join("mixed").await;
    let mut s = relay.sky("/skyrtc/tenant").await;
    let js = s.join(Some("mixed")).await;
    assert_eq!(js.connections, std::slice::from_ref(&jw.you));
    assert_eq!(w.expect("new_peer").await["id"], js.you.as_str());

    // SkyRTC → /ws: the offer's SDP text, the candidate as RTCIceCandidateInit.
    s.emit(
        "__offer",
        json!({"socketId": jw.you, "sdp": {"type": "offer", "sdp": SDP}}),
    )
    .await;
    assert_eq!(
        w.recv().await,
        json!({"type": "offer", "from": js.you, "to": jw.you, "sdp": SDP})
    );
    s.candidate_to_ws(&js.you, &mut w, &jw.you).await;

    // /ws → SkyRTC: as the room page sends them.
    s.answer_from_ws(&js.you, &mut w, &jw.you).await;
    w.send(json!({"type": "candidate", "to": js.you,
        "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "uf"}}))
        .await;
    assert_eq!(
        s.on("_ice_candidate").await,
        json!({"label": 0, "sdpMLineIndex": 0, "sdpMid": "0", "usernameFragment": "uf",
            "candidate": CANDIDATE, "socketId": jw.you})
    );

    // Leaving is told in each one's dialect.
    let mut w2 = relay.connect("/ws/tenant").await;
    let jw2 = w2.join("mixed").await;
    assert_eq!(s.on("_new_peer").await["socketId"], jw2.you.as_str());
    w.expect("new_peer").await;
    drop(s);
    assert_eq!(w.expect("remove_peer").await["id"], js.you.as_str());
    assert_eq!(w2.expect("remove_peer").await["id"], js.you.as_str());
    drop(w2);
    // The namespace is the room's: a SkyRTC peer of the root namespace does not meet them.
    let mut root = relay.sky("/skyrtc").await;
    assert!(root.join(Some("mixed")).await.connections.is_empty());
    assert_eq!(w.expect("remove_peer").await["id"], jw2.you.as_str());
}

/// Unlike the original server, a message reaches only a peer of the sender's room; bad
/// input is an `_error` event and the connection lives on.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_error_events_on_a_connection_that_lives_on() {
    let relay = Relay::start("max-message-size = 4096", "");
    let mut a = relay.sky("/skyrtc").await;
    // Before any room: not joined.
    a.emit(
        "__offer",
        json!({"socketId": MADE_UP_ID, "sdp": {"type": "offer", "sdp": SDP}}),
    )
    .await;
    a.refused("not_joined").await;
    let ja = a.join(Some("one")).await;
    let mut b = relay.sky("/skyrtc").await;
    let jb = b.join(Some("two")).await;

    // A peer of another room, and one that does not exist.
    for to in [jb.you.as_str(), MADE_UP_ID] {
        a.emit(
            "__offer",
            json!({"socketId": to, "sdp": {"type": "offer", "sdp": SDP}}),
        )
        .await;
        let e = a.refused("unknown_peer").await;
        assert!(e["message"].as_str().unwrap().contains(&to[..8]), "{e}");
    }
    b.ws.silent(QUIET).await;

    for (text, code) in [
        ("not json", "bad_message"),
        ("[]", "bad_message"),
        (r#"{"type":"join","room":"one"}"#, "bad_message"),
        (r#"{"eventName":"__dance","data":{}}"#, "unknown_type"),
        (r#"{"eventName":"__join","data":{"room":5}}"#, "bad_message"),
        (
            r#"{"eventName":"__offer","data":{"sdp":"x"}}"#,
            "bad_message",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"x","candidate":"c"}}"#,
            "bad_message",
        ),
        (
            r#"{"eventName":"__answer","data":{"socketId":"x","sdp":"x","from":"y"}}"#,
            "bad_message",
        ),
    ] {
        a.ws.send_text(text).await;
        a.refused(code).await;
    }
    a.ws.send_text(&format!(
        r#"{{"eventName":"__offer","data":{{"socketId":"{}","sdp":"{}"}}}}"#,
        jb.you,
        "x".repeat(5000)
    ))
    .await;
    a.refused("too_large").await;
    a.ws.stream
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    a.refused("bad_message").await;
    // Still in its room, still served.
    a.alive().await;
    let mut c = relay.sky("/skyrtc").await;
    let jc = c.join(Some("one")).await;
    assert_eq!(jc.connections, std::slice::from_ref(&ja.you));
    assert_eq!(a.on("_new_peer").await["socketId"], jc.you.as_str());
    assert_eq!(
        relay.metric("rturn_signal_errors_total{code=\"unknown_peer\"}"),
        2.0
    );
}

/// `/skyrtc` takes the same tokens as `/ws`, namespace and room bound alike.
#[tokio::test(flavor = "multi_thread")]
async fn skyrtc_needs_the_token_ws_needs() {
    const SECRET: &str = "skyrtc-token-secret";
    let signal = format!("token-secret = \"{SECRET}\"");
    let relay = Relay::start(&signal, "");
    let config = relay_config(&signal, "");
    assert_eq!(relay.refused("/skyrtc", &[]).await, 401, "no token");
    assert_eq!(relay.refused("/skyrtc/ns", &[]).await, 401, "no token");
    assert_eq!(relay.refused("/skyrtc?token=garbage", &[]).await, 401);

    let any = token(SECRET, unix_now() + 600, "");
    let mut a = relay.sky(&format!("/skyrtc?token={any}")).await;
    a.join(None).await;

    // A room token of a namespace opens that namespace's room, in either dialect, only.
    let room = mint_token(
        &config,
        &["--room", "r", "--namespace", "ns", "--ttl", "1h"],
    );
    assert_eq!(
        relay
            .refused(&format!("/skyrtc?token={room}&room=r"), &[])
            .await,
        401
    );
    assert_eq!(
        relay
            .refused(&format!("/skyrtc/ns?token={room}"), &[])
            .await,
        401
    );
    let mut s = relay.sky(&format!("/skyrtc/ns?token={room}&room=r")).await;
    s.emit("__join", json!({"room": "other"})).await;
    s.refused("unauthorized").await;
    let js = s.join(Some("r")).await;
    let mut w = relay.connect(&format!("/ws/ns?token={room}&room=r")).await;
    assert_eq!(w.join("r").await.peers, [js.you]);
}

/// The heartbeat and the room limit of `/ws` hold on `/skyrtc`: a SkyRTC client that stops
/// answering pings is dropped and announced with `_remove_peer`; a room of both dialects
/// holds `max-peers-per-room`, the next SkyRTC joiner gets `_error room_full`.
#[tokio::test(flavor = "multi_thread")]
async fn skyrtc_shares_the_heartbeat_and_the_room_limit() {
    let relay = Relay::start(
        "heartbeat-interval = \"1s\"\nheartbeat-timeout = \"3s\"\nmax-peers-per-room = 2",
        "",
    );
    let mut honest = relay.sky("/skyrtc").await;
    honest.join(Some("hb")).await;
    let mut w = relay.connect("/ws").await;
    w.join("hb").await;
    honest.on("_new_peer").await;
    let mut third = relay.sky("/skyrtc").await;
    third.emit("__join", json!({"room": "hb"})).await;
    third.refused("room_full").await;
    drop((w, third));
    honest.on("_remove_peer").await;

    let mut mute = relay.sky("/skyrtc").await;
    let jm = mute.join(Some("hb")).await;
    assert_eq!(honest.on("_new_peer").await["socketId"], jm.you.as_str());
    // `mute` is never polled from here on, so it never answers a Ping with a Pong.
    let gone = honest.ws.recv_within(Duration::from_secs(3 + 4)).await;
    assert_eq!(
        gone,
        json!({"eventName": "_remove_peer", "data": {"socketId": jm.you}})
    );
    assert!(mute.ws.closed_by_server().await);
    assert_eq!(relay.metric("rturn_signal_heartbeat_drops_total"), 1.0);
    // The honest one, which reads and so answers every Ping, is still served.
    honest.alive().await;
}

/// Across the nodes of a cluster, a SkyRTC peer on one and a SkyRTC and a `/ws` peer on the
/// other meet in one room: Redis carries `/ws` messages, each node speaks its clients'
/// dialect.
#[tokio::test(flavor = "multi_thread")]
async fn skyrtc_rooms_cross_nodes() {
    use super::cluster::{EVENTS_ONLY, two_nodes};
    let redis = rturn::testkit::redis::Redis::start();
    let (node_a, node_b) = two_nodes(&redis, "", EVENTS_ONLY).await;
    let mut a = node_a.sky("/skyrtc").await;
    let ja = a.join(Some("across")).await;
    let mut b = node_b.sky("/skyrtc").await;
    let jb = b.join(Some("across")).await;
    assert_eq!(jb.connections, std::slice::from_ref(&ja.you));
    assert_eq!(a.on("_new_peer").await["socketId"], jb.you.as_str());
    let mut w = node_b.connect("/ws").await;
    let jw = w.join("across").await;
    assert_eq!(a.on("_new_peer").await["socketId"], jw.you.as_str());
    b.on("_new_peer").await;

    let offer = json!({"type": "offer", "sdp": SDP});
    b.emit("__offer", json!({"socketId": ja.you, "sdp": offer}))
        .await;
    assert_eq!(
        a.on("_offer").await,
        json!({"sdp": offer, "socketId": jb.you})
    );
    a.candidate_to_ws(&ja.you, &mut w, &jw.you).await;
    a.answer_from_ws(&ja.you, &mut w, &jw.you).await;
    drop(b);
    assert_eq!(a.on("_remove_peer").await, json!({"socketId": jb.you}));
}
