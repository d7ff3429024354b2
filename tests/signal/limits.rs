//! Abuse limits seen from the outside: joins per minute per client address (shared by all of
//! that address's connections, answered `rate_limited` with the connection kept), the
//! message rate applied to binary frames too, and the total connection cap next to the
//! per-IP one. Clients on other addresses come from other loopback addresses (127.0.0.2,
//! 127.0.0.3), which Linux routes like 127.0.0.1.

use super::*;

impl Relay {
    /// Connects a WebSocket to `path` from the local address `from`.
    async fn try_connect_from(&self, from: Ipv4Addr, path: &str) -> Result<Ws, WsError> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        let tcp = within("TCP connect", socket.connect(self.http))
            .await
            .unwrap();
        let request = format!("ws://{}{path}", self.http)
            .into_client_request()
            .unwrap();
        let (stream, _) = within(
            "WebSocket handshake",
            tokio_tungstenite::client_async(request, tcp),
        )
        .await?;
        Ok(Ws { stream })
    }

    async fn connect_from(&self, from: Ipv4Addr) -> Ws {
        match self.try_connect_from(from, "/ws").await {
            Ok(ws) => ws,
            Err(e) => panic!("upgrade from {from} failed: {e}\n{}", self.server.log()),
        }
    }
}

const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const JOINS_REFUSED: &str = "rturn_signal_rate_limited_total{limit=\"joins-per-minute-per-ip\"}";

#[tokio::test(flavor = "multi_thread")]
async fn joins_past_the_per_ip_rate_are_rate_limited_and_the_connection_stays() {
    let relay = Relay::start("joins-per-minute-per-ip = 3", "");
    let mut a = relay.connect("/ws").await;
    a.join("one").await;
    a.join("two").await;
    let ja = a.join("three").await;
    assert_eq!(relay.metric(JOINS_REFUSED), 0.0);

    // The fourth join from 127.0.0.1 within the minute is refused; the connection stays,
    // and so does its place in the room it is in.
    a.send(json!({"type": "join", "room": "four"})).await;
    let refused = a.expect_error("rate_limited").await;
    assert!(
        refused["message"].as_str().unwrap().contains("3 joins"),
        "{refused}"
    );
    a.ping_pong().await;
    assert_eq!(relay.metric(JOINS_REFUSED), 1.0);

    // The bucket is the address's, not the connection's: a new connection from the same
    // address has no joins left either, and closing the first gives none back.
    let mut again = relay.connect("/ws").await;
    again.send(json!({"type": "join", "room": "three"})).await;
    again.expect_error("rate_limited").await;
    drop(again);
    let mut again = relay.connect("/ws").await;
    again.send(json!({"type": "join", "room": "five"})).await;
    again.expect_error("rate_limited").await;

    // Another address has its own: it joins, finds `a` still in "three" and can relay to it.
    let mut b = relay.connect_from(OTHER).await;
    let jb = b.join("three").await;
    assert_eq!(jb.peers, std::slice::from_ref(&ja.you), "{}", jb.reply);
    assert_eq!(a.expect("new_peer").await["id"], jb.you.as_str());
    b.send(json!({"type": "offer", "to": ja.you, "sdp": "v=0"}))
        .await;
    assert_eq!(a.expect("offer").await["from"], jb.you.as_str());
    assert_eq!(relay.metric(JOINS_REFUSED), 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_join_rate_refills_after_a_burst() {
    // 60 a minute: one join a second, bursts of 60. The message rate is raised out of the way.
    let relay = Relay::start(
        "joins-per-minute-per-ip = 60\nmessages-per-second = 1000",
        "",
    );
    let mut a = relay.connect("/ws").await;
    let sent = Instant::now();
    for i in 0..80 {
        let room = format!("r{}", i % 2);
        a.stream
            .feed(Message::text(
                json!({"type": "join", "room": room}).to_string(),
            ))
            .await
            .unwrap();
    }
    within("flush", a.stream.flush()).await.unwrap();
    let (mut joined, mut limited) = (0, 0);
    while joined + limited < 80 {
        let msg = a.recv().await;
        match (msg["type"].as_str(), msg["code"].as_str()) {
            (Some("peers"), _) => joined += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply to a burst of joins: {msg}"),
        }
    }
    // The burst itself takes a moment, in which a token a second comes back.
    let refilled = sent.elapsed().as_secs() as usize + 1;
    assert!(
        (60..=60 + refilled).contains(&joined),
        "{joined} joins of 80 let through in {:?}",
        sent.elapsed()
    );
    assert_eq!(relay.metric(JOINS_REFUSED), limited as f64);

    a.send(json!({"type": "join", "room": "r9"})).await;
    a.expect_error("rate_limited").await;
    // Refused joins take nothing from the refill: about a second later one is back.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.send(json!({"type": "join", "room": "r9"})).await;
        let reply = a.recv().await;
        if reply["type"] == "peers" {
            break;
        }
        assert_eq!(reply["code"], "rate_limited", "{reply}");
        assert!(Instant::now() < deadline, "no join came back within 3 s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_total_connection_cap_holds_across_addresses() {
    let relay = Relay::start("max-connections = 3", "");
    let mut a = relay.connect("/ws").await;
    let mut b = relay.connect_from(OTHER).await;
    let mut c = relay.connect_from(THIRD).await;
    for ws in [&mut a, &mut b, &mut c] {
        ws.ping_pong().await;
    }
    // Each address holds one connection, far below max-connections-per-ip (100): the refusal
    // is the total cap's.
    for from in [Ipv4Addr::LOCALHOST, OTHER, THIRD] {
        match relay.try_connect_from(from, "/ws").await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 503),
            Ok(_) => panic!("a fourth connection (from {from}) was accepted"),
            Err(e) => panic!("refused without an HTTP status: {e}"),
        }
    }
    assert_eq!(relay.metric("rturn_signal_connections"), 3.0);

    // A closed connection frees a place for any address.
    within("close", b.stream.close(None)).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut d = loop {
        match relay.try_connect_from(THIRD, "/ws").await {
            Ok(ws) => break ws,
            Err(WsError::Http(r)) if r.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("place not released: {e}"),
        }
    };
    d.ping_pong().await;
    a.ping_pong().await;
    c.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_frames_count_against_the_message_rate() {
    const RATE: usize = 10;
    let relay = Relay::start(&format!("messages-per-second = {RATE}"), "");
    let mut a = relay.connect("/ws").await;
    let sent = Instant::now();
    for _ in 0..4 * RATE {
        a.stream.feed(Message::binary(vec![0u8; 16])).await.unwrap();
    }
    within("flush", a.stream.flush()).await.unwrap();
    let (mut bad, mut limited) = (0, 0);
    while bad + limited < 4 * RATE {
        let msg = a.recv().await;
        match (msg["type"].as_str(), msg["code"].as_str()) {
            (Some("error"), Some("bad_message")) => bad += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply to a burst of binary frames: {msg}"),
        }
    }
    // The bucket refills while the burst is served: a slow server lets a few more through.
    let refilled = (sent.elapsed().as_secs_f64() * RATE as f64).ceil() as usize;
    assert!(
        limited >= 1,
        "no rate_limited after {} binary frames",
        4 * RATE
    );
    assert!(
        (RATE..=RATE + 5usize.max(refilled)).contains(&bad),
        "{bad} binary frames of {} answered past the rate of {RATE}/s",
        4 * RATE
    );
    assert_eq!(
        relay.metric("rturn_signal_rate_limited_total{limit=\"messages-per-second\"}"),
        limited as f64
    );
    // The connection stays, and is served again once the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_server_fetches_spend_the_join_budget_and_get_429_past_it() {
    // Each /api/ice-servers answer mints TURN credentials, like a join.
    let relay = Relay::start("joins-per-minute-per-ip = 3", "");
    for _ in 0..2 {
        let ok = relay.get("/api/ice-servers");
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let mut ws = relay.connect("/ws").await;
    ws.join("room").await; // the third credential of the minute
    let refused = relay.get("/api/ice-servers");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused
            .headers
            .to_ascii_lowercase()
            .contains("retry-after: 60"),
        "{}",
        refused.headers
    );
    assert!(!refused.body.contains("credential"), "{}", refused.body);
    ws.send(json!({"type": "join", "room": "other"})).await;
    ws.expect_error("rate_limited").await;
    assert_eq!(relay.metric(JOINS_REFUSED), 2.0);
}
