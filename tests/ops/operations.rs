//! Black-box: life under an operator. SIGHUP reloads users and secrets while coturn's
//! turnutils_uclient relays through the server, losing nothing; an invalid file on SIGHUP
//! changes nothing; SIGUSR1 drains: new allocations get 300 with ALTERNATE-SERVER, live ones
//! keep relaying, and the process exits once the last one ends.

use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rturn::testkit::*;
use webrtc_util::Conn;

fn config(users: &str, secret: &str, extra: &str) -> String {
    loopback_config(&format!(
        "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{extra}\
         [auth]\nstatic-auth-secret = \"{secret}\"\n[auth.users]\n{users}"
    ))
}

/// turnutils_uclient with `args` (auth and flags) against `port`, started now.
fn uclient(port: u16, peer: &EchoPeer, args: &[&str], clients: u32, messages: u32) -> Child {
    Command::new("timeout")
        .args(["60", "turnutils_uclient"])
        .args(args)
        .args([
            "-p",
            &port.to_string(),
            "-e",
            "127.0.0.1",
            "-r",
            &peer.port.to_string(),
        ])
        .args(["-m", &clients.to_string(), "-n", &messages.to_string()])
        .args(["-l", "120", "-z", "20", "-c", "-X", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turnutils_uclient is missing: install coturn (scripts/test.sh does)")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Every message of `clients` × `messages` came back.
fn lossless(out: &Output, clients: u32, messages: u32) -> bool {
    let t = text(out);
    let n = clients * messages;
    t.contains("Total lost packets 0 (0.000000%)")
        && t.contains(&format!("tot_send_msgs={n}, tot_recv_msgs={n}"))
}

fn signal(server: &Server, sig: Signal) {
    kill(Pid::from_raw(server.pid() as i32), sig).unwrap();
}

#[test]
fn sighup_reloads_users_and_secrets_without_dropping_traffic() {
    let (dir, path) = write_config(&config("alice = \"wonderland\"\n", "old-secret", ""));
    let mut server = Server::start_file(dir, &path);
    let port = server.udp[0].port();
    let peer = EchoPeer::start();

    // 20 clients relay for about 4 s; the reload lands in the middle.
    let running = uclient(port, &peer, &["-u", "alice", "-w", "wonderland"], 20, 200);
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(
        &path,
        config(
            "alice = \"wonderland\"\nbob = \"builder\"\n",
            "new-secret",
            "",
        ),
    )
    .unwrap();
    signal(&server, Signal::SIGHUP);
    server.wait_line(|l| l.contains("configuration reloaded"));
    let out = running.wait_with_output().unwrap();
    assert!(
        lossless(&out, 20, 200),
        "traffic across the reload:\n{}",
        text(&out)
    );

    // Each later run from an address of its own: the first run's 20 clients left their
    // probe allocations (uclient never deletes those) on 127.0.0.1, and a later socket the
    // kernel gave one of their ports would meet another user's allocation (441).
    let bob = uclient(
        port,
        &peer,
        &["-L", "127.0.0.2", "-u", "bob", "-w", "builder"],
        1,
        20,
    );
    let out = bob.wait_with_output().unwrap();
    assert!(lossless(&out, 1, 20), "the new user:\n{}", text(&out));

    let old = uclient(
        port,
        &peer,
        &["-L", "127.0.0.3", "-W", "old-secret", "-u", "x"],
        1,
        5,
    );
    let out = old.wait_with_output().unwrap();
    assert!(
        !lossless(&out, 1, 5),
        "the old secret still works:\n{}",
        text(&out)
    );
    let new = uclient(
        port,
        &peer,
        &["-L", "127.0.0.4", "-W", "new-secret", "-u", "x"],
        1,
        5,
    );
    let out = new.wait_with_output().unwrap();
    assert!(
        lossless(&out, 1, 5),
        "the new secret fails:\n{}\nserver log:\n{}",
        text(&out),
        server.log()
    );

    // An invalid file is refused and the running configuration stays.
    std::fs::write(
        &path,
        "realm = \"t\"\n[relay]\nmin-port = 9\nmax-port = 1\n",
    )
    .unwrap();
    signal(&server, Signal::SIGHUP);
    server.wait_line(|l| l.contains("reload refused"));
    let bob = uclient(
        port,
        &peer,
        &["-L", "127.0.0.5", "-u", "bob", "-w", "builder"],
        1,
        20,
    );
    assert!(
        lossless(&bob.wait_with_output().unwrap(), 1, 20),
        "after a refused reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_drains_then_exits() {
    let extra = "alternate-server = \"127.0.0.1:3479\"\n";
    let with_http = config("alice = \"wonderland\"\n", "s", extra)
        .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [");
    let (dir, path) = write_config(&with_http);
    let mut server = Server::start_file(dir, &path);
    let peer = EchoPeer::start();

    // A TCP client relays for about 3 s; its allocation ends when it disconnects. The drain
    // starts once it holds its allocation (after that, an Allocate would get 300).
    let tcp_port = server.tcp[0].port();
    let running = uclient(
        tcp_port,
        &peer,
        &["-t", "-u", "alice", "-w", "wonderland"],
        1,
        150,
    );
    wait_metrics(server.http_addr(), TIMEOUT, "the TCP allocation", |m| {
        rturn::testkit::sample(m, "rturn_allocations{transport=\"tcp\"}") >= 1.0
    });
    signal(&server, Signal::SIGUSR1);
    // Not "SIGUSR1 received: draining", which is logged before every shard is told.
    server.wait_line(|l| l.contains("new allocations refused"));

    // A new allocation is sent elsewhere.
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn_client(server.udp[0], socket, "alice", "wonderland").await;
    let refused = tokio::time::timeout(TIMEOUT, client.allocate())
        .await
        .unwrap();
    let error = refused
        .err()
        .expect("a draining server refuses new allocations")
        .to_string();
    assert!(error.contains("300"), "{error}");
    client.close().await.unwrap();

    // The live allocation keeps relaying to its end, then the server exits by itself.
    let out = tokio::task::spawn_blocking(move || running.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        lossless(&out, 1, 150),
        "traffic while draining:\n{}",
        text(&out)
    );
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(server.log().contains("drained"), "{}", server.log());
}

/// Parses Prometheus text: every sample line is `name{labels} number`, and every name has
/// HELP and TYPE lines. Returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            text.contains(&format!("# TYPE {bare} ")),
            "no TYPE for {bare}"
        );
        if name.contains('{') {
            assert!(name.ends_with('}'), "{line}");
        }
        samples.push((name.to_owned(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .1
}

#[test]
fn metrics_parse_and_move_with_real_traffic() {
    let extra = "http = \"127.0.0.1:0\"\n";
    let config =
        config("alice = \"wonderland\"\n", "s", "").replace("tcp = [", &format!("{extra}tcp = ["));
    let server = Server::start(&config);
    let http = server.http_addr();
    let before = parse_prometheus(&http_body(http, "/metrics"));
    assert_eq!(sample(&before, "rturn_allocations_created_total"), 0.0);

    let peer = EchoPeer::start();
    let port = server.udp[0].port();
    let out = uclient(port, &peer, &["-u", "alice", "-w", "wonderland"], 2, 30)
        .wait_with_output()
        .unwrap();
    assert!(lossless(&out, 2, 30), "{}", text(&out));
    let wrong = uclient(port, &peer, &["-u", "alice", "-w", "nope"], 1, 1);
    let _ = wrong.wait_with_output().unwrap();

    let after = parse_prometheus(&http_body(http, "/metrics"));
    assert!(sample(&after, "rturn_allocations_created_total") >= 2.0);
    assert!(sample(&after, "rturn_allocations{transport=\"udp\"}") >= 2.0);
    assert!(sample(&after, "rturn_relayed_packets_total{direction=\"to_peer\"}") >= 60.0);
    assert!(
        sample(
            &after,
            "rturn_relayed_packets_total{direction=\"to_client\"}"
        ) >= 60.0
    );
    assert!(sample(&after, "rturn_relayed_bytes_total{direction=\"to_peer\"}") >= 60.0 * 120.0);
    assert!(
        sample(
            &after,
            "rturn_auth_failures_total{reason=\"bad_integrity\"}"
        ) >= 1.0
    );
    assert!(sample(&after, "rturn_relay_ports{state=\"in_use\"}") >= 2.0);
}

/// One HTTP request; returns status code and body.
fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// A `turn` crate client that allocates as alice on `server`; returns the client (its
/// allocation lives while the relay connection does).
async fn allocate(server: &Server) -> (turn::client::Client, impl Conn + use<>) {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn_client(server.udp[0], socket, "alice", "wonderland").await;
    let relay = tokio::time::timeout(TIMEOUT, client.allocate())
        .await
        .unwrap()
        .unwrap();
    (client, relay)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_its_token_lists_kicks_and_drains() {
    const TOKEN: &str = "admin-token-0123456789";
    let config = config("alice = \"wonderland\"\n", "s", "")
        .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [")
        + &format!("[admin]\ntoken = \"{TOKEN}\"\n");
    let mut server = Server::start(&config);
    let http = server.http_addr();
    let get = |path: &'static str, token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || http_request(http, "GET", path, token))
    };

    let (code, body) = get("/admin/status", None).await.unwrap();
    assert_eq!(code, 401);
    assert!(
        body.contains("Authorization: Bearer"),
        "the 401 says how: {body}"
    );
    assert_eq!(
        get("/admin/status", Some("wrong-token-0123456789"))
            .await
            .unwrap()
            .0,
        401
    );
    let (code, body) = get("/admin/status", Some(TOKEN)).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["allocations"].as_u64(), status["draining"].as_bool()),
        (Some(0), Some(false))
    );

    let (_client, relay) = allocate(&server).await;
    let (code, body) = get("/admin/sessions", Some(TOKEN)).await.unwrap();
    assert_eq!(code, 200);
    let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
    let session = &sessions["sessions"][0];
    assert_eq!(
        (session["user"].as_str(), session["transport"].as_str()),
        (Some("alice"), Some("udp"))
    );
    assert_eq!(
        session["relays"][0].as_str(),
        Some(relay.local_addr().unwrap().to_string().as_str())
    );
    let id = session["id"].as_str().unwrap().to_owned();

    let kick = move |path: String, token| {
        tokio::task::spawn_blocking(move || http_request(http, "DELETE", &path, token))
    };
    assert_eq!(
        kick(format!("/admin/sessions/{id}"), None).await.unwrap().0,
        401
    );
    let (code, body) = kick(format!("/admin/sessions/{id}"), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!((code, body.contains("\"kicked\":1")), (200, true), "{body}");
    let (_, body) = get("/admin/sessions", Some(TOKEN)).await.unwrap();
    assert!(
        body.contains("\"sessions\":[]"),
        "the kicked session is gone: {body}"
    );
    assert_eq!(
        kick(format!("/admin/sessions/{id}"), Some(TOKEN))
            .await
            .unwrap()
            .0,
        404
    );

    let (_client2, _relay2) = allocate(&server).await;
    let (code, body) = kick("/admin/sessions?user=alice".into(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!((code, body.contains("\"kicked\":1")), (200, true), "{body}");

    let post =
        tokio::task::spawn_blocking(move || http_request(http, "POST", "/admin/drain", None));
    assert_eq!(post.await.unwrap().0, 401);
    let post = tokio::task::spawn_blocking(move || {
        http_request(http, "POST", "/admin/drain", Some(TOKEN))
    });
    assert_eq!(post.await.unwrap().0, 200);
    // Nothing is allocated any more, so the drained server exits by itself.
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// A config with an HTTP listener, `[admin]` and `[ice]` sections as given.
fn http_config(admin: &str, ice: &str) -> String {
    config("alice = \"wonderland\"\n", "s", "")
        .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [")
        + admin
        + ice
}

/// `/api/ice-servers` as JSON.
fn ice_servers(http: std::net::SocketAddr) -> serde_json::Value {
    let (code, body) = http_request(http, "GET", "/api/ice-servers", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// SIGHUP used to log "configuration reloaded" and keep the old admin token valid (a leaked
/// token could not be rotated, a removed [admin] left the API open) and the old [ice].
#[test]
fn sighup_rotates_the_admin_token_and_applies_ice() {
    const OLD: &str = "old-admin-token-0123456789";
    const NEW: &str = "new-admin-token-0123456789";
    let admin = |token: &str| format!("[admin]\ntoken = \"{token}\"\n");
    let (dir, path) = write_config(&http_config(
        &admin(OLD),
        "[ice]\ncredential-ttl = \"10m\"\n",
    ));
    let mut server = Server::start_file(dir, &path);
    let http = server.http_addr();
    assert_eq!(http_request(http, "GET", "/admin/status", Some(OLD)).0, 200);
    let before = ice_servers(http);
    assert_eq!(before["ttl"], 600);
    assert!(before.to_string().contains("turn:127.0.0.1:"), "{before}");

    std::fs::write(
        &path,
        http_config(
            &admin(NEW),
            "[ice]\ncredential-ttl = \"20m\"\npublic-host = \"turn.example.org\"\n",
        ),
    )
    .unwrap();
    signal(&server, Signal::SIGHUP);
    server.wait_line(|l| l.contains("configuration reloaded"));
    assert_eq!(
        http_request(http, "GET", "/admin/status", Some(OLD)).0,
        401,
        "the rotated token still works"
    );
    assert_eq!(http_request(http, "GET", "/admin/status", Some(NEW)).0, 200);
    let after = ice_servers(http);
    assert_eq!(after["ttl"], 1200, "{after}");
    let urls = after["iceServers"].to_string();
    assert!(
        urls.contains("turn:turn.example.org:") && !urls.contains("127.0.0.1"),
        "{after}"
    );
    // The minted credentials follow the new TTL too.
    let username = after["iceServers"][1]["username"].as_str().unwrap();
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry.abs_diff(now + 1200) <= 60, "{username}");

    // Removing [admin] closes the API.
    std::fs::write(&path, http_config("", "")).unwrap();
    signal(&server, Signal::SIGHUP);
    server.wait_line(|l| l.contains("configuration reloaded"));
    let (code, _) = http_request(http, "GET", "/admin/status", Some(NEW));
    assert_eq!(code, 404, "the admin API is still open");
    assert!(
        !server.log().contains("restart required"),
        "{}",
        server.log()
    );
}

/// What only a restart applies is named in the log line and in `/healthz`, precisely, and
/// the server keeps serving on the old values.
#[test]
fn sighup_names_what_needs_a_restart() {
    let (dir, path) = write_config(&http_config("", ""));
    let mut server = Server::start_file(dir, &path);
    let http = server.http_addr();
    let health = |http| {
        let (code, body) = http_request(http, "GET", "/healthz", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert!(health(http).get("restart_required").is_none());

    let moved = http_config("", "").replace("udp = [\"127.0.0.1:0\"]", "udp = [\"127.0.0.1:3\"]")
        + "[server]\nworkers = 3\n";
    assert_ne!(moved, http_config("", ""));
    std::fs::write(&path, moved).unwrap();
    signal(&server, Signal::SIGHUP);
    let line = server.wait_line(|l| l.contains("configuration reloaded"));
    assert!(
        line.contains("restart required for listen.udp, server.workers"),
        "{line}"
    );
    let body = health(http);
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["restart_required"],
        serde_json::json!(["listen.udp", "server.workers"]),
        "{body}"
    );
    // Still serving STUN on the address it bound.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
        .send_to(&binding_request(&[], false).raw, server.udp[0])
        .unwrap();
    let mut buf = [0; 512];
    assert!(socket.recv_from(&mut buf).unwrap().0 >= 20);

    // Back to the started values: nothing is pending any more.
    std::fs::write(&path, http_config("", "")).unwrap();
    signal(&server, Signal::SIGHUP);
    let line = server.wait_line(|l| l.contains("configuration reloaded"));
    assert!(!line.contains("restart"), "{line}");
    assert!(health(http).get("restart_required").is_none());
}

/// `[relay] offload`: `auto` on loopback addresses, as root (CI runs as root), loads the
/// kernel program and says so in one log line, `/healthz` and `/metrics`; `off` is off, with
/// its reason in `/healthz`, and logs nothing about it.
#[test]
fn the_offload_says_whether_it_is_on_and_why_not() {
    for (extra, on) in [("", true), ("offload = \"off\"\n", false)] {
        let text = config("alice = \"wonderland\"\n", "s", extra)
            .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [");
        // Started: its ready line, logged after the offload's, was read.
        let server = Server::start(&text);
        let (code, body) = http_request(server.http_addr(), "GET", "/healthz", None);
        assert_eq!(code, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["offload"]["active"], on, "{body}");
        assert_eq!(health["offload"]["reason"].is_string(), !on, "{body}");
        let samples = server.metrics();
        let active = f64::from(u8::from(on));
        assert!(
            samples
                .iter()
                .any(|(n, v)| n == "rturn_offload_active" && *v == active),
            "{samples:?}"
        );
        let log = server.log();
        let said = log.matches("relay.offload = \"auto\": ").count();
        assert_eq!(said, usize::from(on), "{extra:?}:\n{log}");
        if on {
            assert!(
                log.contains("the kernel relays bound UDP channels (on lo)"),
                "{log}"
            );
        }
    }
}
