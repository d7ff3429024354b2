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
    let mut b = relay.connect(&format!("/ws/ns?token={minted}")).await;
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
