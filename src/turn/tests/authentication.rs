//! Authentication (RFC 8489 §9.2.4): challenges, nonces, credentials, integrity.

use stun::fingerprint::FINGERPRINT;
use stun::message::Setter;

use super::*;

// Authentication (RFC 8489 §9.2.4).

#[test]
fn unauthenticated_allocate_is_challenged() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let check = h
        .auth
        .check_nonce(alice.nonce().as_bytes(), UNIX_START, tuple(1).client);
    assert_eq!(check, NonceCheck::Valid);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert!(h.held().is_empty());
}

#[test]
fn integrity_without_username_realm_or_nonce_is_400() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    for missing in [ATTR_USERNAME, ATTR_REALM, ATTR_NONCE] {
        let without = alice.with(alice.session.clone().leaving_out(missing));
        let raw = without.signed(&Request::allocate());
        assert_error(&h.send(0, alice.tuple, &raw), 400);
    }
    assert_eq!(h.mgr.allocation_count(), 0);
}

#[test]
fn forged_or_foreign_nonce_is_438_and_the_fresh_one_works() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let mut nonce = alice.nonce().to_owned();
    let last = if nonce.ends_with('0') { "1" } else { "0" };
    nonce.replace_range(nonce.len() - 1.., last);
    let forged = alice.with_nonce(&nonce);
    let fresh = assert_challenge(&h.request(0, &forged, Request::allocate()), 438);
    // A nonce issued to another client address.
    let foreign = alice.with_nonce(h.alice(2).nonce());
    assert_challenge(&h.request(0, &foreign, Request::allocate()), 438);
    assert_eq!(h.mgr.allocation_count(), 0);
    let retry = alice.with_nonce(&fresh);
    h.allocate(0, &retry);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn nonce_older_than_its_lifetime_is_438() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let fresh = assert_challenge(&h.request(601, &alice, Request::allocate()), 438);
    let alice = alice.with_nonce(&fresh);
    assert_eq!(h.mgr.allocation_count(), 0);
    h.allocate(601, &alice);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn bad_credentials_are_401() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let nonce = alice.nonce();
    let wrong_password = alice.with(Session::new("alice", "looking-glass", REALM, nonce));
    let unknown_user = alice.with(Session::new("mallory", "wonderland", REALM, nonce));
    let wrong_realm = alice.with(Session::new("alice", "wonderland", "evil.org", nonce));
    for client in [wrong_password, unknown_user, wrong_realm] {
        assert_challenge(&h.request(0, &client, Request::allocate()), 401);
    }
    // The one local tweak on the client's output: a bit of the MAC flipped, then FINGERPRINT.
    let unsealed = Request::allocate().without_fingerprint();
    let mut corrupted = unsealed
        .build(TransactionId::new(), Some(&alice.session))
        .unwrap();
    *corrupted.raw.last_mut().unwrap() ^= 1; // the last byte of MESSAGE-INTEGRITY
    FINGERPRINT.add_to(&mut corrupted).unwrap();
    assert_challenge(&h.send(0, alice.tuple, &corrupted.raw), 401);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert_eq!(h.quotas.total(), 0);
}

/// What the log says: the 401 that starts every session is normal, so it is only traced;
/// a failed login is said at debug (-v) with its reason; nothing at info (the default).
#[test]
fn challenges_are_traced_and_failed_logins_logged_at_debug() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let scenario = || {
        let mut h = Setup::default().start();
        let alice = h.alice(1); // one challenge
        let wrong = alice.with(Session::new("alice", "looking-glass", REALM, alice.nonce()));
        assert_challenge(&h.request(0, &wrong, Request::allocate()), 401);
        h.allocate(0, &alice);
    };
    tracing::subscriber::with_default(subscriber, || {
        // Other tests' threads meet these callsites at the same time with no subscriber,
        // and one may cache "never" for them while they register. Once the first run has
        // registered them all, a rebuild asks this subscriber again, and only the second
        // run's log is read.
        scenario();
        tracing::callsite::rebuild_interest_cache();
        captured.0.lock().unwrap().clear();
        scenario();
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let challenge: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("401 challenge"))
        .collect();
    assert_eq!(challenge.len(), 1, "{log}");
    assert!(challenge[0].contains("TRACE"), "{log}");
    let failed: Vec<_> = (lines.iter())
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains("DEBUG"), "{log}");
    assert!(
        failed[0].contains("reason=\"bad_integrity\"") && failed[0].contains("alice"),
        "{log}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(" INFO ") || l.contains(" WARN ")),
        "{log}"
    );
}

#[test]
fn rest_credentials_allocate_until_they_expire() {
    let mut h = Setup::default().start();
    let (user, pass) = h.auth.mint_rest(Some("carol"), UNIX_START, 60).unwrap();
    let carol = h.login(0, tuple(1), &user, &pass);
    h.allocate(0, &carol);
    // Past the expiry in the username the allocation can no longer be refreshed.
    assert_challenge(&h.request(120, &carol, Request::refresh(600)), 401);
    assert_eq!(h.mgr.allocation_count(), 1);

    let (user, pass) = h
        .auth
        .mint_rest(Some("dave"), UNIX_START - 7200, 3600)
        .unwrap();
    let dave = h.login(0, tuple(2), &user, &pass);
    assert_challenge(&h.request(0, &dave, Request::allocate()), 401);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let sha256 = alice.with(alice.session.clone().signing_with(Integrity::Sha256));
    let resp = h.send(0, alice.tuple, &sha256.signed(&Request::allocate()));
    assert!(resp.is_success(), "error {:?}", resp.error);
    assert_eq!(
        verify_integrity(&resp.msg, alice.key()),
        Ok(Integrity::Sha256)
    );
}

#[test]
fn attributes_appended_after_integrity_are_ignored() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    // Attributes appended past MESSAGE-INTEGRITY, before FINGERPRINT, as an on-path attacker
    // could: the MAC still verifies.

    // The only XOR-PEER-ADDRESS follows the MAC: as if there were none.
    let req = Request::new(METHOD_CREATE_PERMISSION).after_integrity(|r| r.peer(PEER_A));
    let raw = alice.signed(&req);
    let resp = h.send(0, alice.tuple, &raw);
    assert_error(&resp, 400);
    assert_eq!(h.route(0, relay(50000), PEER_A), None);

    // A second peer appended after the MAC is not installed; the signed one is.
    let req = Request::create_permission(&[PEER_A]).after_integrity(|r| r.peer(PEER_B));
    let raw = alice.signed(&req);
    assert_success(&h.send(0, alice.tuple, &raw), alice.key());
    assert!(h.route(0, relay(50000), PEER_A).is_some());
    assert_eq!(h.route(0, relay(50000), PEER_B), None);

    // LIFETIME=0 appended to a signed Refresh does not delete the allocation.
    let raw = alice.signed(&Request::refresh(600).after_integrity(|r| r.lifetime(0)));
    let resp = h.send(0, alice.tuple, &raw);
    assert_success(&resp, alice.key());
    assert_eq!(resp.lifetime, Some(600));
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.held(), vec![relay(50000)]);
}
