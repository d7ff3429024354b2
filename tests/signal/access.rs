//! Access: tokens, origins, connection caps; the ICE-servers API and pages.

use super::*;

// ---------------------------------------------------------------------------------------------
// Access: tokens, origins, connection caps
// ---------------------------------------------------------------------------------------------

const TOKEN_SECRET: &str = "signal-token-secret";

#[tokio::test(flavor = "multi_thread")]
async fn tokens_guard_the_websocket_and_the_ice_api() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let future = unix_now() + 600;

    assert_eq!(relay.refused("/ws", &[]).await, 401, "no token");
    assert_eq!(relay.refused("/ws?token=", &[]).await, 401, "empty token");
    assert_eq!(relay.refused("/ws?token=garbage", &[]).await, 401);
    let wrong_secret = token("not-the-secret", future, "");
    assert_eq!(
        relay
            .refused(&format!("/ws?token={wrong_secret}"), &[])
            .await,
        401
    );
    let good = token(TOKEN_SECRET, future, "");
    let (expiry, mac) = good.split_once(':').unwrap();
    let flipped = format!(
        "{expiry}:{}{}",
        &mac[..63],
        if mac.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(
        relay.refused(&format!("/ws?token={flipped}"), &[]).await,
        401
    );
    let moved = format!("{}:{mac}", future + 1);
    assert_eq!(
        relay.refused(&format!("/ws?token={moved}"), &[]).await,
        401,
        "expiry is signed"
    );
    let expired = token(TOKEN_SECRET, unix_now() - 10, "");
    assert_eq!(
        relay.refused(&format!("/ws?token={expired}"), &[]).await,
        401,
        "expired"
    );

    // A token computed by the contract's formula, and one minted by the CLI.
    let mut a = relay.connect(&format!("/ws?token={good}")).await;
    a.join("anything").await;
    let config = relay_config(&signal, "");
    let minted = mint_token(&config, &["--ttl", "1h"]);
    let (expiry, _) = minted.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry.abs_diff(unix_now() + 3600) <= 60,
        "{minted}: expiry not in 1h"
    );
    assert_eq!(
        minted,
        token(TOKEN_SECRET, expiry, ""),
        "CLI token off the formula"
    );
    // A namespace needs a token of its own (see a_token_is_bound_to_its_namespace).
    let ns = mint_token(&config, &["--ttl", "1h", "--namespace", "ns"]);
    let mut b = relay.connect(&format!("/ws/ns?token={ns}")).await;
    b.join("anywhere").await;

    // The CLI's --ttl is honoured.
    let short = mint_token(&config, &["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        relay.refused(&format!("/ws?token={short}"), &[]).await,
        401,
        "expired CLI token"
    );

    // The ICE API is guarded too; health is not.
    assert_eq!(relay.get("/api/ice-servers").status, 401);
    assert_eq!(
        relay
            .get(&format!("/api/ice-servers?token={expired}"))
            .status,
        401
    );
    let ok = relay.get(&format!("/api/ice-servers?token={good}"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(relay.get("/healthz").status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_token_opens_only_its_room() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let config = relay_config(&signal, "");
    let minted = mint_token(&config, &["--room", "alpha", "--ttl", "1h"]);
    let (expiry, _) = minted.split_once(':').unwrap();
    assert_eq!(
        minted,
        token(TOKEN_SECRET, expiry.parse().unwrap(), "alpha"),
        "CLI room token off the formula"
    );

    let mut a = relay
        .connect(&format!("/ws?token={minted}&room=alpha"))
        .await;
    a.send(json!({"type": "join", "room": "beta"})).await;
    a.expect_error("unauthorized").await;
    a.join("alpha").await;
    a.send(json!({"type": "join", "room": "beta"})).await;
    a.expect_error("unauthorized").await;
    a.ping_pong().await;

    // Claiming another room, or none, with the same token gets nowhere near beta.
    for path in [
        format!("/ws?token={minted}&room=beta"),
        format!("/ws?token={minted}"),
    ] {
        match relay.try_connect(&path, &[]).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401, "{path}"),
            Err(e) => panic!("{path}: {e}"),
            Ok(mut ws) => {
                ws.send(json!({"type": "join", "room": "beta"})).await;
                ws.expect_error("unauthorized").await;
            }
        }
    }
}

/// A 401 says what was wrong with the token and how to get a good one: where the secret is
/// (`[signal] token-secret`), how to mint one, and that a room token needs `&room=`.
#[tokio::test(flavor = "multi_thread")]
async fn token_refusals_name_the_fix() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let future = unix_now() + 3600;
    let room_token = token(TOKEN_SECRET, future, "alpha");
    let expired = token(TOKEN_SECRET, unix_now() - 10, "");
    let cases = [
        (String::new(), "a token is required"),
        ("?token=garbage".to_owned(), "malformed token"),
        (format!("?token={expired}"), "token expired"),
        (format!("?token={room_token}"), "&room=R"),
        (format!("?token={room_token}&room=beta"), "another room"),
    ];
    for (query, says) in &cases {
        let api = relay.get(&format!("/api/ice-servers{query}"));
        assert_eq!(api.status, 401, "{query}");
        for fix in [*says, "rturn -c FILE token", "[signal] token-secret"] {
            assert!(api.body.contains(fix), "{query}: {fix}: {}", api.body);
        }
    }
    // The upgrade's 401 carries the same text.
    match relay
        .try_connect(&format!("/ws?token={room_token}"), &[])
        .await
    {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
            let body = response.body().clone().unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("&room=R"), "{body}");
        }
        other => panic!("a room token without its room: {:?}", other.map(|_| ())),
    }
    // Joining another room than the token's says how to get there.
    let mut a = relay
        .connect(&format!("/ws?token={room_token}&room=alpha"))
        .await;
    a.send(json!({"type": "join", "room": "beta"})).await;
    let refused = a.expect_error("unauthorized").await;
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("--room") && message.contains("&room="),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_origins_may_connect() {
    let relay = Relay::start("allowed-origins = [\"https://good.example\"]", "");
    let status = relay
        .refused("/ws", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(status, 403);
    let status = relay
        .refused("/ws", &[("Origin", "https://good.example.evil.example")])
        .await;
    assert_eq!(status, 403);

    let mut good = relay
        .try_connect("/ws", &[("Origin", "https://good.example")])
        .await
        .unwrap();
    good.join("r").await;
    let own = format!("http://{}", relay.http);
    let mut own = relay.try_connect("/ws", &[("Origin", &own)]).await.unwrap();
    own.join("r").await;
}

/// The contract's formula for a token of `namespace` (`/ws/NAMESPACE`): the MAC of
/// `EXPIRY/NAMESPACE:ROOM`.
fn namespace_token(secret: &str, expiry: u64, namespace: &str, room: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{expiry}/{namespace}:{room}").as_bytes());
    let hex: String = (mac.finalize().into_bytes().iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{expiry}:{hex}")
}

/// One token for room R joined R under /ws, /ws/tenant-a and /ws/tenant-b: tenants could
/// walk into each other's rooms. The namespace is signed now.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_bound_to_its_namespace() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let config = relay_config(&signal, "");

    let root = mint_token(&config, &["--room", "r", "--ttl", "1h"]);
    let mut a = relay.connect(&format!("/ws?token={root}&room=r")).await;
    a.join("r").await;
    for ns in ["tenant-a", "tenant-b"] {
        for path in [
            format!("/ws/{ns}?token={root}&room=r"),
            format!("/ws/{ns}?token={root}"),
        ] {
            assert_eq!(relay.refused(&path, &[]).await, 401, "{path}");
        }
    }

    let tenant = mint_token(
        &config,
        &["--room", "r", "--ttl", "1h", "--namespace", "tenant-a"],
    );
    let (expiry, _) = tenant.split_once(':').unwrap();
    assert_eq!(
        tenant,
        namespace_token(TOKEN_SECRET, expiry.parse().unwrap(), "tenant-a", "r"),
        "CLI namespace token off the formula"
    );
    let mut b = relay
        .connect(&format!("/ws/tenant-a?token={tenant}&room=r"))
        .await;
    b.join("r").await;
    for path in [
        format!("/ws?token={tenant}&room=r"),
        format!("/ws/tenant-b?token={tenant}&room=r"),
    ] {
        assert_eq!(relay.refused(&path, &[]).await, 401, "{path}");
    }
    // The ICE API takes the namespace as a parameter.
    let api = format!("/api/ice-servers?token={tenant}&room=r");
    assert_eq!(relay.get(&api).status, 401);
    assert_eq!(relay.get(&format!("{api}&namespace=tenant-a")).status, 200);
}

/// "0EXPIRY:MAC" parsed to the expiry the MAC was made over and verified: a second spelling
/// of every token.
#[tokio::test(flavor = "multi_thread")]
async fn leading_zeros_in_a_token_expiry_are_refused() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let good = token(TOKEN_SECRET, unix_now() + 600, "");
    for spelling in [format!("0{good}"), format!("000{good}")] {
        assert_eq!(
            relay.refused(&format!("/ws?token={spelling}"), &[]).await,
            401,
            "{spelling}"
        );
        let api = relay.get(&format!("/api/ice-servers?token={spelling}"));
        assert_eq!(api.status, 401, "{spelling}");
    }
    relay
        .connect(&format!("/ws?token={good}"))
        .await
        .ping_pong()
        .await;
}

/// The Host header is the attacker's with DNS rebinding (evil.example now resolves to this
/// server, and the browser sends `Host: evil.example:P`), and schemes were not compared.
#[tokio::test(flavor = "multi_thread")]
async fn origins_are_checked_against_the_configuration_not_the_host_header() {
    let relay = Relay::start(
        "allowed-origins = [\"https://good.example\"]",
        "public-host = \"turn.example.org\"",
    );
    let port = relay.http.port();
    let rebound = format!("evil.example:{port}");
    let evil = format!("http://{rebound}");
    assert_eq!(
        relay
            .refused("/ws", &[("Origin", &evil), ("Host", &rebound)])
            .await,
        403,
        "DNS rebinding"
    );
    for origin in [
        format!("https://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{port}"),
        "http://good.example".to_owned(),
        format!("http://turn.example.org:{}", port + 1),
    ] {
        assert_eq!(
            relay.refused("/ws", &[("Origin", &origin)]).await,
            403,
            "{origin}"
        );
    }
    // The API is guarded alike.
    let response = http_get_with(
        relay.http,
        "/api/ice-servers",
        &[("Origin", &evil), ("Host", &rebound)],
    );
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    // Our own origins, as configured: the listener, localhost, the public host name.
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://turn.example.org:{port}"),
        "https://good.example".to_owned(),
    ] {
        let mut ws = match relay.try_connect("/ws", &[("Origin", &origin)]).await {
            Ok(ws) => ws,
            Err(e) => panic!("{origin}: {e}"),
        };
        ws.ping_pong().await;
    }
}

/// One raw HTTP/1.1 GET with extra headers (they replace the defaults); the whole response.
fn http_get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or(addr.to_string(), |(_, value)| (*value).to_owned());
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// Origin and token refusals, too_large and room_full were counted nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_in_metrics() {
    let signal = format!(
        "token-secret = \"{TOKEN_SECRET}\"\nallowed-origins = [\"https://good.example\"]\n\
         max-peers-per-room = 1\nmax-message-size = 1024"
    );
    let relay = Relay::start(&signal, "");
    let origin = "rturn_signal_refused_total{reason=\"origin\"}";
    let token_refused = "rturn_signal_refused_total{reason=\"token\"}";
    let too_large = "rturn_signal_errors_total{code=\"too_large\"}";
    let room_full = "rturn_signal_errors_total{code=\"room_full\"}";
    for name in [origin, token_refused, too_large, room_full] {
        assert_eq!(relay.metric(name), 0.0, "{name}");
    }
    let good = token(TOKEN_SECRET, unix_now() + 600, "");
    let evil = [("Origin", "https://evil.example")];
    assert_eq!(
        relay.refused(&format!("/ws?token={good}"), &evil).await,
        403
    );
    assert_eq!(relay.refused("/ws", &[]).await, 401);
    assert_eq!(relay.refused("/ws?token=0123:bad", &[]).await, 401);
    assert_eq!(relay.get("/api/ice-servers").status, 401);

    let mut a = relay.connect(&format!("/ws?token={good}")).await;
    let mut b = relay.connect(&format!("/ws?token={good}")).await;
    a.join("r").await;
    b.send(json!({"type": "join", "room": "r"})).await;
    b.expect_error("room_full").await;
    a.send_text(&format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(1500)
    ))
    .await;
    a.expect_error("too_large").await;

    assert_eq!(relay.metric(origin), 1.0);
    assert_eq!(relay.metric(token_refused), 3.0);
    assert_eq!(relay.metric(too_large), 1.0);
    assert_eq!(relay.metric(room_full), 1.0);
}

/// Decided: the token gates the upgrade (and, for a room token, which room may be joined);
/// a connection it let in lives on past its expiry, so a call in progress keeps its
/// signaling for ICE restarts. A new connection with the expired token is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_outlives_its_token() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let expiry = unix_now() + 1;
    let short = token(TOKEN_SECRET, expiry, "");
    let mut a = relay.connect(&format!("/ws?token={short}")).await;
    let mut b = relay.connect(&format!("/ws?token={short}")).await;
    a.join("r").await;
    b.join("r").await;
    a.expect("new_peer").await;
    while unix_now() <= expiry + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        relay.refused(&format!("/ws?token={short}"), &[]).await,
        401,
        "expired"
    );
    a.ping_pong().await;
    b.ping_pong().await;
    // Still in its room: a leaves, and b is told.
    a.send(json!({"type": "leave"})).await;
    b.expect("remove_peer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_ip_are_capped_and_released() {
    let relay = Relay::start("max-connections-per-ip = 2", "");
    let mut a = relay.connect("/ws").await;
    let mut b = relay.connect("/ws").await;
    a.ping_pong().await;
    b.ping_pong().await;
    assert_eq!(relay.refused("/ws", &[]).await, 503);
    assert_eq!(relay.refused("/ws/other", &[]).await, 503);

    // A closed connection gives its place back.
    within("close", a.stream.close(None)).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut c = loop {
        match relay.try_connect("/ws", &[]).await {
            Ok(ws) => break ws,
            Err(WsError::Http(r)) if r.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("place not released: {e}"),
        }
    };
    c.ping_pong().await;
    b.ping_pong().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP: ICE servers, health, pages
// ---------------------------------------------------------------------------------------------

/// The `iceServers` array of `/api/ice-servers`, and its `ttl`.
fn ice_servers(relay: &Relay) -> (Vec<Value>, u64) {
    let response = relay.get("/api/ice-servers");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.headers.contains("application/json"),
        "{}",
        response.headers
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    let servers = body["iceServers"].as_array().unwrap().clone();
    (
        servers,
        body["ttl"].as_u64().unwrap_or_else(|| panic!("{body}")),
    )
}

/// All URLs of `servers`, in order.
fn urls(servers: &[Value]) -> Vec<String> {
    servers
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().iter())
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_servers_point_at_rturn_and_their_credentials_allocate() {
    let relay = Relay::start("", "credential-ttl = \"10m\"");
    let (udp, tcp) = (relay.server.udp[0].port(), relay.server.tcp[0].port());
    let (servers, ttl) = ice_servers(&relay);
    assert_eq!(ttl, 600);
    let mut got = urls(&servers);
    got.sort();
    let mut expected = vec![
        format!("stun:127.0.0.1:{udp}"),
        format!("turn:127.0.0.1:{udp}?transport=udp"),
        format!("turn:127.0.0.1:{tcp}?transport=tcp"),
    ];
    expected.sort();
    assert_eq!(got, expected);

    let turn = servers
        .iter()
        .find(|s| s["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN credentials in {servers:?}"));
    assert!(
        urls(std::slice::from_ref(turn))
            .iter()
            .all(|u| u.starts_with("turn:"))
    );
    let username = turn["username"].as_str().unwrap();
    let credential = turn["credential"].as_str().unwrap();
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(
        expiry.abs_diff(unix_now() + 600) <= 60,
        "{username}: expiry not in ttl"
    );

    // The signaling peers reply hands out the same servers.
    let mut ws = relay.connect("/ws").await;
    let joined = ws.join("r").await;
    let mut from_join = urls(joined.reply["iceServers"].as_array().unwrap());
    from_join.sort();
    assert_eq!(from_join, expected);

    // The credentials allocate on rturn's TURN listener, with a client we did not write.
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn_client(relay.server.udp[0], socket, username, credential).await;
    let allocated = match within("allocate", client.allocate()).await {
        Ok(allocated) => allocated,
        Err(e) => panic!(
            "allocate with /api/ice-servers credentials: {e}\n{}",
            relay.server.log()
        ),
    };
    let relayed = allocated.local_addr().unwrap();
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    within("client close", client.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_servers_use_the_public_host() {
    let relay = Relay::start("", "public-host = \"turn.example.org\"");
    let (udp, tcp) = (relay.server.udp[0].port(), relay.server.tcp[0].port());
    let mut got = urls(&ice_servers(&relay).0);
    got.sort();
    let mut expected = vec![
        format!("stun:turn.example.org:{udp}"),
        format!("turn:turn.example.org:{udp}?transport=udp"),
        format!("turn:turn.example.org:{tcp}?transport=tcp"),
    ];
    expected.sort();
    assert_eq!(got, expected);
}

/// The TURN username in an `iceServers` array.
fn turn_username(servers: &[Value]) -> String {
    (servers.iter())
        .find_map(|s| s["username"].as_str())
        .unwrap_or_else(|| panic!("no TURN credentials in {servers:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_client_gets_credentials_of_its_own() {
    // One shared user part let one client's allocations use up everybody's user-quota.
    // A join reply's REST user part is the peer's ID...
    let relay = Relay::start("", "");
    let (mut a, mut b) = (relay.connect("/ws").await, relay.connect("/ws").await);
    let (ja, jb) = (a.join("r").await, b.join("r").await);
    for joined in [&ja, &jb] {
        let username = turn_username(joined.reply["iceServers"].as_array().unwrap());
        assert_eq!(
            username.split_once(':').unwrap().1,
            joined.you,
            "{username}"
        );
    }
    // ...and `/api/ice-servers` gives each client address one of its own, every time.
    let user_part =
        |servers: &[Value]| turn_username(servers).split_once(':').unwrap().1.to_owned();
    let api = user_part(&ice_servers(&relay).0);
    assert_eq!(api, user_part(&ice_servers(&relay).0));
    assert!(api != ja.you && api != jb.you && api != "rturn", "{api}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_pages_are_served() {
    let relay = Relay::start("", "");
    assert_eq!(relay.get("/healthz").status, 200);
    for path in ["/", "/room/abc"] {
        let page = relay.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.headers.contains("text/html"),
            "{path}: {}",
            page.headers
        );
        assert!(page.body.to_ascii_lowercase().contains("<html"), "{path}");
    }
    assert_eq!(relay.get("/no/such/page").status, 404);
}
