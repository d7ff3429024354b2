//! Quotas one client cannot take from everybody, against the real binary at the default
//! worker count (a client's sockets are spread over the workers, so every count must be
//! shared): `user-quota` on the user part of REST usernames, per-client user parts in
//! `/api/ice-servers` credentials, `max-allocations-per-ip`, and EVEN-PORT reservations,
//! which count against the quotas of whoever made them. Clients on other addresses come from
//! 127.0.0.2 and 127.0.0.3, which Linux routes like 127.0.0.1.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use rturn::testkit::*;
use stun::attributes::{
    ATTR_EVEN_PORT, ATTR_LIFETIME, ATTR_NONCE, ATTR_REQUESTED_TRANSPORT, ATTR_RESERVATION_TOKEN,
    ATTR_XOR_RELAYED_ADDRESS,
};
use stun::message::{CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_REFRESH, Message, Method};
use stun::xoraddr::XorMappedAddress;

const REALM: &str = "test.local";

/// UDP, TCP and HTTP on loopback, loopback relays, a REST secret and static user alice;
/// `relay` goes into `[relay]`. No `workers`: as many as cores.
fn config(relay: &str) -> String {
    format!(
        "realm = \"{REALM}\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
         http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
         {relay}\n[auth]\nstatic-auth-secret = \"a-rest-secret-for-tests\"\n\
         [auth.users]\nalice = \"wonderland\"\n"
    )
}

/// TURN credentials: username and password.
#[derive(Debug, Clone)]
struct Creds(String, String);

fn alice() -> Creds {
    Creds("alice".into(), "wonderland".into())
}

/// The TURN username and credential `/api/ice-servers` hands to a client at `from`.
fn ice_credentials(server: &Server, from: &str) -> Creds {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = (from.parse::<IpAddr>().expect("ip"), 0).into();
    socket.bind(&local.into()).expect("bind");
    (socket.connect_timeout(&server.http_addr().into(), TIMEOUT)).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let request = "GET /api/ice-servers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let turn = (body["iceServers"].as_array().expect("iceServers").iter())
        .find(|s| s["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN credentials in {body}"));
    let text = |key: &str| turn[key].as_str().expect("a string").to_owned();
    Creds(text("username"), text("credential"))
}

/// The REST user part of a username `EXPIRY:USER`.
fn user_part(creds: &Creds) -> &str {
    creds.0.split_once(':').expect("EXPIRY:USER").1
}

/// A UDP socket on loopback address `ip` (a new source port: any worker), connected.
fn udp_from(ip: &str, server: &Server) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.connect(server.udp[0]).expect("connect");
    socket
}

/// A TURN request, signed with `creds` and `nonce` when given.
fn request(
    method: Method,
    auth: Option<(&Creds, &str)>,
    add: impl FnOnce(&mut Message),
) -> Message {
    let signer = auth.map(|(Creds(user, pass), nonce)| Signer {
        user,
        realm: REALM,
        pass,
        nonce,
    });
    turn_request(method, signer, add)
}

/// A TURN client on one socket that has its nonce.
struct Client {
    socket: UdpSocket,
    creds: Creds,
    nonce: String,
}

impl Client {
    /// A new socket from `ip` that fetched a nonce with an unauthenticated Allocate.
    fn new(server: &Server, ip: &str, creds: &Creds) -> Client {
        let socket = udp_from(ip, server);
        let challenge = udp_exchange(&socket, &allocate(None, |_| {}));
        assert_eq!(error_code(&challenge), Some(401));
        let nonce = String::from_utf8(challenge.get(ATTR_NONCE).expect("NONCE")).expect("text");
        Client {
            socket,
            creds: creds.clone(),
            nonce,
        }
    }

    /// Sends a signed `method` request; returns the success response or the error code.
    fn call(&self, method: Method, add: impl FnOnce(&mut Message)) -> Result<Message, u16> {
        let req = request(method, Some((&self.creds, &self.nonce)), add);
        let answer = udp_exchange(&self.socket, &req);
        match answer.typ.class {
            CLASS_SUCCESS_RESPONSE => Ok(answer),
            _ => Err(error_code(&answer).expect("ERROR-CODE")),
        }
    }

    fn allocate(&self, add: impl FnOnce(&mut Message)) -> Result<Message, u16> {
        self.call(METHOD_ALLOCATE, |m| {
            m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            add(m);
        })
    }

    fn delete(&self) {
        let gone = self.call(METHOD_REFRESH, |m| {
            m.add(ATTR_LIFETIME, &0u32.to_be_bytes())
        });
        assert!(gone.is_ok(), "{gone:?}");
    }
}

fn allocate(auth: Option<(&Creds, &str)>, add: impl FnOnce(&mut Message)) -> Message {
    request(METHOD_ALLOCATE, auth, |m| {
        m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        add(m);
    })
}

fn even_port_reserving(m: &mut Message) {
    m.add(ATTR_EVEN_PORT, &[0x80]);
}

fn relayed(answer: &Message) -> SocketAddr {
    let mut relay = XorMappedAddress::default();
    (relay.get_from_as(answer, ATTR_XOR_RELAYED_ADDRESS)).expect("XOR-RELAYED-ADDRESS");
    SocketAddr::new(relay.ip, relay.port)
}

#[test]
fn ice_credentials_are_per_client_and_user_quota_counts_their_user_part() {
    let server = Server::start(&config("user-quota = 1"));
    let first = ice_credentials(&server, "127.0.0.1");
    let a = Client::new(&server, "127.0.0.1", &first);
    a.allocate(|_| {}).expect("the first allocation");
    // Fetching again a second later gives another expiry, so another username; the user
    // part is the same, and so is the quota.
    std::thread::sleep(Duration::from_millis(1100));
    let again = ice_credentials(&server, "127.0.0.1");
    assert_ne!(first.0, again.0);
    assert_eq!(user_part(&first), user_part(&again));
    let a2 = Client::new(&server, "127.0.0.1", &again);
    assert_eq!(a2.allocate(|_| {}).err(), Some(486));
    // Another client has its own user part and its own quota.
    let other = ice_credentials(&server, "127.0.0.2");
    assert_ne!(user_part(&other), user_part(&first));
    let b = Client::new(&server, "127.0.0.2", &other);
    b.allocate(|_| {}).expect("another client's allocation");
    assert_eq!(
        server.metric("rturn_quota_refusals_total{quota=\"user\"}"),
        1.0
    );
    // The quota frees with the allocation.
    a.delete();
    a2.allocate(|_| {}).expect("room again");
}

#[test]
fn allocations_per_address_are_capped_on_every_worker() {
    let server = Server::start(&config("max-allocations-per-ip = 3"));
    // Each socket has its own source port, so the workers share these clients between them.
    let office: Vec<Client> = (0..6)
        .map(|_| Client::new(&server, "127.0.0.1", &alice()))
        .collect();
    let answers: Vec<Option<u16>> = office.iter().map(|c| c.allocate(|_| {}).err()).collect();
    assert_eq!(answers, [None, None, None, Some(486), Some(486), Some(486)]);
    assert_eq!(
        server.metric("rturn_quota_refusals_total{quota=\"per_ip\"}"),
        3.0
    );
    // The same user from another address is another client.
    let elsewhere = Client::new(&server, "127.0.0.2", &alice());
    elsewhere.allocate(|_| {}).expect("another address");
    // A deleted allocation makes room.
    office[0].delete();
    office[3].allocate(|_| {}).expect("room again");
}

/// `[relay]` keys for `n` consecutive ports free on 127.0.0.1 when the test starts, where
/// no socket of a parallel test takes one by chance ([`quiet_ports`]).
fn port_range(n: u16) -> String {
    let first = quiet_ports(n, 20_000..32_000);
    format!("min-port = {first}\nmax-port = {}\n", first + n - 1)
}

#[test]
fn even_port_reservations_count_and_cannot_starve_the_range() {
    // The attack: Allocate(EVEN-PORT R=1) and Refresh(0), over and over, kept every odd port
    // of the range reserved with no allocation held, and every pair request after it got
    // 508. Each reservation now holds a unit of its maker's quotas until it lapses (here
    // alice's user-quota; max-allocations-per-ip and total-quota count it alike).
    let server = Server::start(&config(&format!("user-quota = 4\n{}", port_range(20))));
    let mut reserved = 0;
    for _ in 0..10 {
        let attacker = Client::new(&server, "127.0.0.1", &alice());
        match attacker.allocate(even_port_reserving) {
            Ok(_) => {
                reserved += 1;
                attacker.delete();
            }
            Err(code) => assert_eq!(code, 486),
        }
    }
    // Room for four units, and a pair needs two: three reservations.
    assert_eq!(reserved, 3);
    assert_eq!(server.metric("rturn_relay_ports{state=\"reserved\"}"), 3.0);
    assert_eq!(
        server.metric("rturn_quota_refusals_total{quota=\"user\"}"),
        7.0
    );
    // Somebody else still gets an RTP/RTCP pair, claimed from a new socket (maybe another
    // worker than the one holding the reservation).
    let creds = ice_credentials(&server, "127.0.0.3");
    let rtp = Client::new(&server, "127.0.0.3", &creds);
    let answer = rtp.allocate(even_port_reserving).expect("a pair");
    let token = answer
        .get(ATTR_RESERVATION_TOKEN)
        .expect("RESERVATION-TOKEN");
    let rtcp = Client::new(&server, "127.0.0.3", &creds);
    let claimed = rtcp.allocate(|m| m.add(ATTR_RESERVATION_TOKEN, &token));
    let claimed = claimed.expect("the reserved port");
    assert_eq!(relayed(&claimed).port(), relayed(&answer).port() + 1);
}
