//! Black-box: `[stun] only = true` serves Binding to coturn's turnutils_stunclient and to raw
//! sockets, needs neither credentials nor a relay address, and refuses every TURN request
//! (signed or not, over UDP and TCP) with 403.

use rturn::testkit::*;
use stun::message::{BINDING_SUCCESS, CLASS_ERROR_RESPONSE, METHOD_ALLOCATE, METHOD_REFRESH};

const STUN_ONLY: &str = "[stun]\nonly = true\n";

#[test]
fn stun_only_serves_coturn_stunclient_and_refuses_allocate() {
    // No [auth], no relay-ip: a STUN-only server needs neither.
    let server = Server::start(&loopback_config(STUN_ONLY));
    super::stun_binding::assert_stunclient_maps(&server);

    let client = udp_client(server.udp[0]);
    let response = udp_exchange(&client, &binding_request(&[], true));
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(mapped_address(&response), client.local_addr().unwrap());

    // An unsigned Allocate (a browser's first) and a signed one both get 403, not 401.
    for signer in [None, Some(alice("any-nonce"))] {
        let allocate = turn_request(METHOD_ALLOCATE, signer, |m| {
            m.add(stun::attributes::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let response = udp_exchange(&client, &allocate);
        assert_eq!(response.typ.method, METHOD_ALLOCATE);
        assert_eq!(response.typ.class, CLASS_ERROR_RESPONSE);
        assert_eq!(error_code(&response), Some(403));
    }
    let refresh = turn_request(METHOD_REFRESH, None, |_| {});
    assert_eq!(error_code(&udp_exchange(&client, &refresh)), Some(403));

    let mut stream = tcp_client(server.tcp[0]);
    let allocate = turn_request(METHOD_ALLOCATE, None, |m| {
        m.add(stun::attributes::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert_eq!(error_code(&tcp_exchange(&mut stream, &allocate)), Some(403));
    let response = tcp_exchange(&mut stream, &binding_request(&[], false));
    assert_eq!(response.typ, BINDING_SUCCESS);
}

#[test]
fn stun_only_refuses_allocate_although_users_are_configured() {
    // Users and a relay address do not switch TURN back on.
    let extra = format!(
        "{STUN_ONLY}[relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\nalice = \"wonderland\"\n"
    );
    let server = Server::start(&loopback_config(&extra));
    let client = udp_client(server.udp[0]);
    let allocate = turn_request(METHOD_ALLOCATE, Some(alice("n")), |m| {
        m.add(stun::attributes::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert_eq!(error_code(&udp_exchange(&client, &allocate)), Some(403));
}
