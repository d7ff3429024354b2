//! Authentication (RFC 8489 §9.2.4): challenges, nonces, credentials, integrity.

use super::*;

// Authentication (RFC 8489 §9.2.4).

#[test]
fn unauthenticated_allocate_is_challenged() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let check = h
        .auth
        .check_nonce(alice.nonce.as_bytes(), UNIX_START, tuple(1).client);
    assert_eq!(check, NonceCheck::Valid);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert!(h.held().is_empty());
}

#[test]
fn integrity_without_username_realm_or_nonce_is_400() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let fields = [
        (ATTR_USERNAME, "alice"),
        (ATTR_REALM, REALM),
        (ATTR_NONCE, alice.nonce.as_str()),
    ];
    for missing in 0..fields.len() {
        let mut req = Req::allocate();
        for (_, &(typ, text)) in fields.iter().enumerate().filter(|(i, _)| *i != missing) {
            req = req.text(typ, text);
        }
        add_integrity(&mut req.0, &alice.key, Integrity::Sha1);
        assert_error(&h.send(0, alice.tuple, &req.build()), 400);
    }
    assert_eq!(h.mgr.allocation_count(), 0);
}

#[test]
fn forged_or_foreign_nonce_is_438_and_the_fresh_one_works() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let mut forged = alice.clone();
    let last = if forged.nonce.ends_with('0') {
        "1"
    } else {
        "0"
    };
    forged.nonce.replace_range(forged.nonce.len() - 1.., last);
    let fresh = assert_challenge(&h.request(0, &forged, Req::allocate()), 438);
    // A nonce issued to another client address.
    let foreign = Client {
        nonce: h.alice(2).nonce,
        ..alice.clone()
    };
    assert_challenge(&h.request(0, &foreign, Req::allocate()), 438);
    assert_eq!(h.mgr.allocation_count(), 0);
    let retry = Client {
        nonce: fresh,
        ..alice
    };
    h.allocate(0, &retry);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn nonce_older_than_its_lifetime_is_438() {
    let mut h = Setup::default().start();
    let mut alice = h.alice(1);
    alice.nonce = assert_challenge(&h.request(601, &alice, Req::allocate()), 438);
    assert_eq!(h.mgr.allocation_count(), 0);
    h.allocate(601, &alice);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn bad_credentials_are_401() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let wrong_password = long_term_key("alice", REALM, "looking-glass");
    let wrong_password = Client {
        key: wrong_password,
        ..alice.clone()
    };
    let mallory = long_term_key("mallory", REALM, "wonderland");
    let unknown_user = Client {
        user: "mallory".into(),
        key: mallory,
        ..alice.clone()
    };
    let evil = long_term_key("alice", "evil.org", "wonderland");
    let wrong_realm = Client {
        realm: "evil.org".into(),
        key: evil,
        ..alice.clone()
    };
    for client in [wrong_password, unknown_user, wrong_realm] {
        assert_challenge(&h.request(0, &client, Req::allocate()), 401);
    }
    let mut corrupted = alice.sign(Req::allocate());
    *corrupted.0.raw.last_mut().unwrap() ^= 1; // the last byte of MESSAGE-INTEGRITY
    assert_challenge(&h.send(0, alice.tuple, &corrupted.build()), 401);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert_eq!(h.quotas.total(), 0);
}

#[test]
fn rest_credentials_allocate_until_they_expire() {
    let mut h = Setup::default().start();
    let (user, pass) = h.auth.mint_rest(Some("carol"), UNIX_START, 60).unwrap();
    let carol = h.login(0, tuple(1), &user, &pass);
    h.allocate(0, &carol);
    // Past the expiry in the username the allocation can no longer be refreshed.
    assert_challenge(&h.request(120, &carol, Req::refresh(600)), 401);
    assert_eq!(h.mgr.allocation_count(), 1);

    let (user, pass) = h
        .auth
        .mint_rest(Some("dave"), UNIX_START - 7200, 3600)
        .unwrap();
    let dave = h.login(0, tuple(2), &user, &pass);
    assert_challenge(&h.request(0, &dave, Req::allocate()), 401);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let mut req = (Req::allocate().text(ATTR_USERNAME, "alice"))
        .text(ATTR_REALM, REALM)
        .text(ATTR_NONCE, &alice.nonce);
    add_integrity(&mut req.0, &alice.key, Integrity::Sha256);
    let resp = h.send(0, alice.tuple, &req.build());
    assert_eq!(resp.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(verify_integrity(&resp, &alice.key), Ok(Integrity::Sha256));
}

/// Signs `req` for `client`, then appends `after` past MESSAGE-INTEGRITY (as an on-path
/// attacker could: the MAC still verifies) and FINGERPRINT.
fn signed_then_appended(client: &Client, req: Req, after: impl FnOnce(Req) -> Req) -> Vec<u8> {
    after(client.sign(req)).build()
}

#[test]
fn attributes_appended_after_integrity_are_ignored() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);

    // The only XOR-PEER-ADDRESS follows the MAC: as if there were none.
    let raw = signed_then_appended(&alice, Req::new(METHOD_CREATE_PERMISSION), |r| {
        r.peer(PEER_A)
    });
    let resp = h.send(0, alice.tuple, &raw);
    assert_error(&resp, 400);
    assert_eq!(h.route(0, relay(50000), PEER_A), None);

    // A second peer appended after the MAC is not installed; the signed one is.
    let raw = signed_then_appended(&alice, Req::permission(&[PEER_A]), |r| r.peer(PEER_B));
    assert_success(&h.send(0, alice.tuple, &raw), &alice.key);
    assert!(h.route(0, relay(50000), PEER_A).is_some());
    assert_eq!(h.route(0, relay(50000), PEER_B), None);

    // LIFETIME=0 appended to a signed Refresh does not delete the allocation.
    let raw = signed_then_appended(&alice, Req::refresh(600), |r| r.lifetime(0));
    let resp = h.send(0, alice.tuple, &raw);
    assert_success(&resp, &alice.key);
    assert_eq!(lifetime(&resp), 600);
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.held(), vec![relay(50000)]);
}
