//! Two rturn nodes as one fleet: they share `static-auth-secret` and `nonce-secret`, so
//! credentials one node's `/api/ice-servers` minted allocate on the other, and a node at
//! capacity or draining sends new allocations to its `alternate-server` (300 with
//! ALTERNATE-SERVER) instead of refusing them.

use std::net::SocketAddr;
use std::sync::Arc;

use rturn::testkit::*;
use stun::addr::AlternateServer;
use stun::attributes::ATTR_ALTERNATE_SERVER;
use stun::integrity::MessageIntegrity;

const SHARED: &str = "[auth]\nstatic-auth-secret = \"fleet secret 0123456789\"\n\
                      nonce-secret = \"fleet nonce key 0123456789\"\n";

/// The TURN REST username and credential from `/api/ice-servers` at `http`.
fn minted_credentials(http: SocketAddr) -> (String, String) {
    let body: serde_json::Value =
        serde_json::from_str(&http_body(http, "/api/ice-servers")).unwrap();
    let turn = (body["iceServers"].as_array().unwrap().iter())
        .find(|s| s.get("username").is_some())
        .unwrap_or_else(|| panic!("no TURN entry in {body}"))
        .clone();
    let field = |k: &str| turn[k].as_str().unwrap().to_owned();
    (field("username"), field("credential"))
}

/// Allocates on `server` with the `turn` crate's client; the error text on refusal.
async fn allocate(
    server: SocketAddr,
    user: &str,
    pass: &str,
) -> Result<turn::client::Client, String> {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn_client(server, socket, user, pass).await;
    match tokio::time::timeout(TIMEOUT, client.allocate()).await {
        Ok(Ok(_relay)) => Ok(client),
        Ok(Err(e)) => {
            client.close().await.unwrap();
            Err(e.to_string())
        }
        Err(_) => panic!("Allocate on {server} unanswered within {TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_sends_clients_to_its_alternate_where_its_credentials_work() {
    let b = Server::start(&loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n{SHARED}"
    )));
    let a = Server::start(&loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n{}alternate-server = \"{}\"\n{SHARED}",
        one_port_range().1,
        b.udp[0]
    )));
    let (user, pass) = minted_credentials(a.http_addr());

    // A's only relay port goes to the first client; the next gets 300, not 508.
    let first = allocate(a.udp[0], &user, &pass).await.unwrap();
    let refused = allocate(a.udp[0], &user, &pass).await.err().unwrap();
    assert!(refused.contains("300"), "{refused}");
    assert_eq!(a.metric("rturn_requests_refused_total{code=\"300\"}"), 1.0);
    assert_eq!(a.metric("rturn_requests_refused_total{code=\"508\"}"), 0.0);

    // The alternate takes it, with the credentials A minted.
    let moved = allocate(b.udp[0], &user, &pass).await.unwrap();
    assert_eq!(b.metric("rturn_allocations_created_total"), 1.0);
    moved.close().await.unwrap();
    first.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_node_answers_300_with_the_alternates_address() {
    let b = Server::start(&loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n{SHARED}"
    )));
    let mut a = Server::start(&loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\nalternate-server = \"{}\"\n{SHARED}",
        b.udp[0]
    )));
    let (user, pass) = minted_credentials(a.http_addr());

    // A live allocation keeps the draining node up; a new one is sent to B.
    let live = RawTurn::allocate(a.udp[0], &user, &pass, false);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.pid() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    a.wait_line(|l| l.contains("new allocations refused"));
    let Err(mut refused) = RawTurn::try_allocate(a.udp[0], &user, &pass, false) else {
        panic!("a draining node allocated");
    };
    assert_eq!(error_code(&refused), Some(300), "{refused}");
    let mut alternate = AlternateServer::default();
    (alternate.get_from_as(&refused, ATTR_ALTERNATE_SERVER)).expect("ALTERNATE-SERVER in the 300");
    assert_eq!(SocketAddr::new(alternate.ip, alternate.port), b.udp[0]);
    // Signed with the client's key (RFC 8489 §10): the client can trust the redirect.
    MessageIntegrity::new_long_term_integrity(user.clone(), "test.local".into(), pass.clone())
        .check(&mut refused)
        .expect("the 300 carries the client's MESSAGE-INTEGRITY");
    assert_eq!(a.metric("rturn_requests_refused_total{code=\"300\"}"), 1.0);

    // Where it is sent, the same credentials allocate.
    let moved = RawTurn::allocate(b.udp[0], &user, &pass, false);
    assert_eq!(moved.relays.len(), 1);
    assert_eq!(b.metric("rturn_allocations_created_total"), 1.0);
    drop(live);
}
