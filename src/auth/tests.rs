//! Tests of credentials, integrity and nonces, with RFC 5769 and RFC 8489 vectors.
use stun::attributes::ATTR_USERNAME;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{BINDING_REQUEST, Setter};

use super::*;

const MATRIX: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";

/// RFC 5769 §2.4: request with long-term credentials.
const RFC5769_LONG_TERM: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79
                36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

/// RFC 8489 Appendix B.1 as corrected by erratum 6268 (USERHASH, NONCE, REALM,
/// PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256); the MAC was re-derived
/// independently before being pasted here.
const RFC8489_B1: &str = "
    00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f
                24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
    00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f 34 39 39 6b 39 35 34 64
                36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41 00 00 00
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 1d 00 04 00 02 00 00
    00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24
                13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    let pairs = digits.chunks(2).map(|p| std::str::from_utf8(p).unwrap());
    pairs.map(|p| u8::from_str_radix(p, 16).unwrap()).collect()
}

fn decode(bytes: &[u8]) -> Message {
    let mut m = Message::new();
    m.unmarshal_binary(bytes).unwrap();
    m
}

fn request() -> Message {
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    m.add(ATTR_USERNAME, b"alice");
    m
}

fn settings(secrets: &[&str], users: &[(&str, &str)]) -> AuthSettings {
    AuthSettings {
        realm: "example.org".into(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        users: users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn auth(secrets: &[&str], users: &[(&str, &str)]) -> Auth {
    Auth::new(settings(secrets, users))
}

#[test]
fn rfc5769_long_term_vector() {
    let key = long_term_key(MATRIX, "example.org", "TheMatrIX");
    let m = decode(&hex(RFC5769_LONG_TERM));
    assert_eq!(verify_integrity(&m, &key), Ok(Integrity::Sha1));
    let wrong = long_term_key(MATRIX, "example.org", "TheMatrix");
    assert_eq!(verify_integrity(&m, &wrong), Err(AuthError::BadIntegrity));
    for at in [1, 24, 60, 100] {
        let mut flipped = m.clone();
        flipped.raw[at] ^= 0x01;
        assert_eq!(
            verify_integrity(&flipped, &key),
            Err(AuthError::BadIntegrity)
        );
    }
    let mut truncated = m.clone();
    truncated.raw.truncate(100);
    assert_eq!(
        verify_integrity(&truncated, &key),
        Err(AuthError::BadIntegrity)
    );
}

#[test]
fn rfc8489_b1_sha256_vector() {
    let raw = hex(RFC8489_B1);
    let key = Sha256::digest(format!("{MATRIX}:example.org:TheMatrIX"));
    assert_eq!(verify_raw(&raw, &key), Ok(Integrity::Sha256));
    assert_eq!(verify_raw(&raw, &key[..16]), Err(AuthError::BadIntegrity));
    let mut flipped = raw.clone();
    flipped[30] ^= 0x80;
    assert_eq!(verify_raw(&flipped, &key), Err(AuthError::BadIntegrity));
}

#[test]
fn sha256_round_trip_truncation_and_preference() {
    let key = long_term_key("alice", "example.org", "secret");
    let mut m = request();
    add_integrity(&mut m, &key, Integrity::Sha256);
    FINGERPRINT.add_to(&mut m).unwrap();
    assert_eq!(
        verify_integrity(&decode(&m.raw), &key),
        Ok(Integrity::Sha256)
    );
    assert_eq!(verify_integrity(&m, &[0; 16]), Err(AuthError::BadIntegrity));

    for len in [12, 16, 18, 24, 36] {
        let mut m = request();
        let start = MESSAGE_HEADER_SIZE + m.length as usize;
        let mac = integrity_mac::<Hmac<Sha256>>(&key, &m.raw, start, len).unwrap();
        m.add(
            ATTR_MESSAGE_INTEGRITY_SHA256,
            &[&mac[..], &[0; 4]].concat()[..len],
        );
        let valid = (16..=32).contains(&len) && len % 4 == 0;
        assert_eq!(
            verify_integrity(&m, &key).is_ok(),
            valid,
            "truncated to {len}"
        );
    }

    // Both present: SHA-256 decides, and a good SHA-1 cannot rescue a bad SHA-256.
    let mut m = request();
    add_integrity(&mut m, &key, Integrity::Sha1);
    add_integrity(&mut m, &key, Integrity::Sha256);
    assert_eq!(verify_integrity(&m, &key), Ok(Integrity::Sha256));
    *m.raw.last_mut().unwrap() ^= 1;
    assert_eq!(verify_integrity(&m, &key), Err(AuthError::BadIntegrity));
    assert_eq!(
        verify_integrity(&request(), &key),
        Err(AuthError::BadIntegrity)
    );
}

#[test]
fn sha1_matches_the_stun_crate() {
    let key = long_term_key("alice", "example.org", "secret");
    let theirs = || {
        let (u, r, p) = ("alice".into(), "example.org".into(), "secret".into());
        MessageIntegrity::new_long_term_integrity(u, r, p)
    };
    let mut ours = request();
    add_integrity(&mut ours, &key, Integrity::Sha1);
    FINGERPRINT.add_to(&mut ours).unwrap();
    assert_eq!(verify_integrity(&ours, &key), Ok(Integrity::Sha1));
    theirs().check(&mut decode(&ours.raw)).unwrap();

    let mut built = request();
    theirs().add_to(&mut built).unwrap();
    FINGERPRINT.add_to(&mut built).unwrap();
    assert_eq!(
        verify_integrity(&decode(&built.raw), &key),
        Ok(Integrity::Sha1)
    );
}

#[test]
fn static_users() {
    fn shared<T: Send + Sync>() {}
    shared::<Auth>();
    let plain = long_term_key("alice", "example.org", "secret");
    let hex_key: String = plain.iter().map(|b| format!("{b:02X}")).collect();
    let bob = format!("0x{hex_key}");
    let auth = auth(
        &[],
        &[("alice", "secret"), ("bob", &bob), ("carol", "0xnope")],
    );
    assert_eq!(auth.realm(), "example.org");
    assert_eq!(auth.keys_for("alice", 0), Ok(vec![plain]));
    assert_eq!(
        auth.keys_for("bob", 0),
        Ok(vec![plain]),
        "0x key is used as is"
    );
    let carol = long_term_key("carol", "example.org", "0xnope");
    assert_eq!(auth.keys_for("carol", 0), Ok(vec![carol]));
    assert_eq!(auth.keys_for("mallory", 0), Err(AuthError::UnknownUser));
    assert_eq!(
        auth.keys_for("1700000000:a", 0),
        Err(AuthError::UnknownUser)
    );
    assert_eq!(auth.mint_rest(None, 0, 60), None);
}

#[test]
fn rest_credentials() {
    let auth = auth(&["new", "old"], &[("2000000000", "pw")]);
    let now = 1_700_000_000;
    let (user, pass) = auth.mint_rest(Some("alice"), now, 3600).unwrap();
    assert_eq!(user, "1700003600:alice");
    let mut mac: Hmac<Sha1> = keyed(b"new");
    Mac::update(&mut mac, user.as_bytes());
    assert_eq!(pass, STANDARD.encode(mac.finalize().into_bytes()));
    let key = long_term_key(&user, "example.org", &pass);
    assert_eq!(auth.keys_for(&user, now).unwrap()[0], key);
    assert_eq!(auth.keys_for(&user, now + 3600).unwrap().len(), 2);
    assert_eq!(auth.keys_for(&user, now + 3601), Err(AuthError::Expired));
    assert_eq!(
        auth.keys_for("x1700003600:a", now),
        Err(AuthError::UnknownUser)
    );
    assert_eq!(auth.keys_for(":alice", now), Err(AuthError::UnknownUser));

    // Minted before the rotation (now the second secret), as a bare timestamp.
    let (user, pass) = self::auth(&["old"], &[]).mint_rest(None, now, 60).unwrap();
    assert_eq!(user, "1700000060");
    let keys = auth.keys_for(&user, now).unwrap();
    assert_eq!(keys[1], long_term_key(&user, "example.org", &pass));
    assert_ne!(keys[0], keys[1]);

    // A static user named like a REST username gets every candidate.
    let keys = auth.keys_for("2000000000", now).unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], long_term_key("2000000000", "example.org", "pw"));
    assert_eq!(auth.keys_for("2000000000", 2_000_000_001).unwrap().len(), 1);
}

#[test]
fn rest_custom_separator() {
    let auth = Auth::new(AuthSettings {
        rest_separator: '|',
        ..settings(&["s"], &[])
    });
    let (user, pass) = auth.mint_rest(Some("a:b"), 100, 50).unwrap();
    assert_eq!(user, "150|a:b");
    let key = long_term_key(&user, "example.org", &pass);
    assert_eq!(auth.keys_for(&user, 100), Ok(vec![key]));
    assert_eq!(auth.keys_for("150:a", 100), Err(AuthError::UnknownUser));
}

#[test]
fn quotas_count_the_user_part_of_rest_usernames() {
    let auth = auth(&["s"], &[("2000000000:bob", "pw"), ("carol", "pw")]);
    // Every minting has another expiry, and the same user.
    assert_eq!(auth.quota_user("1700003600:alice"), "alice");
    assert_eq!(auth.quota_user("1700003601:alice"), "alice");
    assert_eq!(auth.quota_user("1700003601:a:b"), "a:b");
    // A bare timestamp names nobody: it is its own user, not one shared by all of them.
    assert_eq!(auth.quota_user("1700003601"), "1700003601");
    // Static users (even one named like a REST username) and anything else: the name.
    assert_eq!(auth.quota_user("2000000000:bob"), "2000000000:bob");
    assert_eq!(auth.quota_user("carol"), "carol");
    assert_eq!(auth.quota_user("x1:alice"), "x1:alice");
    // Without a REST secret there are no REST usernames.
    let static_only = self::auth(&[], &[]);
    assert_eq!(
        static_only.quota_user("1700003600:alice"),
        "1700003600:alice"
    );
    let piped = Auth::new(AuthSettings {
        rest_separator: '|',
        ..settings(&["s"], &[])
    });
    assert_eq!(piped.quota_user("150|a:b"), "a:b");
}

#[test]
fn nonces() {
    let fleet = |secret: &[u8]| {
        let nonce_secret = Some(secret.to_vec());
        Auth::new(AuthSettings {
            nonce_secret,
            ..settings(&[], &[])
        })
    };
    let auth = fleet(b"fleet secret");
    let client: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let check = |nonce: &[u8], now: u64, client: &str| {
        auth.check_nonce(nonce, now, client.parse().unwrap())
    };
    let now = 1_700_000_000;
    let nonce = auth.make_nonce(now, client);
    assert!(
        nonce.len() < 128 && nonce.bytes().all(|b| b.is_ascii_graphic()),
        "{nonce}"
    );
    let n = nonce.as_bytes();
    assert_eq!(check(n, now, "192.0.2.1:5000"), NonceCheck::Valid);
    assert_eq!(check(n, now + 600, "192.0.2.1:5000"), NonceCheck::Valid);
    assert_eq!(check(n, now + 601, "192.0.2.1:5000"), NonceCheck::Stale);
    assert_eq!(check(n, now - 5, "192.0.2.1:5000"), NonceCheck::Valid);
    assert_eq!(check(n, now - 60, "192.0.2.1:5000"), NonceCheck::Stale);
    assert_eq!(check(n, now, "192.0.2.2:5000"), NonceCheck::Invalid);
    assert_eq!(check(n, now, "192.0.2.1:5001"), NonceCheck::Invalid);
    assert_eq!(check(n, now, "[::ffff:192.0.2.1]:5000"), NonceCheck::Valid);
    let v6 = auth.make_nonce(now, "[2001:db8::1]:5000".parse().unwrap());
    assert_eq!(
        check(v6.as_bytes(), now, "[2001:db8::1]:5000"),
        NonceCheck::Valid
    );
    assert_eq!(
        check(v6.as_bytes(), now, "[2001:db8::2]:5000"),
        NonceCheck::Invalid
    );

    for i in 0..n.len() {
        let mut flipped = n.to_vec();
        flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            check(&flipped, now, "192.0.2.1:5000"),
            NonceCheck::Invalid,
            "{i}"
        );
    }
    let upper = nonce.to_ascii_uppercase();
    let garbage = [
        &b""[..],
        b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA",
        &n[1..],
        &[0xff; 40],
    ];
    for bad in garbage
        .into_iter()
        .chain([upper.as_bytes()].into_iter().filter(|u| *u != n))
    {
        assert_eq!(check(bad, now, "192.0.2.1:5000"), NonceCheck::Invalid);
    }

    // A fleet sharing the secret accepts each other's nonces; nobody else does.
    assert_eq!(
        fleet(b"fleet secret").check_nonce(n, now, client),
        NonceCheck::Valid
    );
    assert_eq!(
        fleet(b"other secret").check_nonce(n, now, client),
        NonceCheck::Invalid
    );
    let random = Auth::new(settings(&[], &[]));
    assert_eq!(random.check_nonce(n, now, client), NonceCheck::Invalid);
    let own = random.make_nonce(now, client);
    assert_eq!(
        random.check_nonce(own.as_bytes(), now, client),
        NonceCheck::Valid
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever precedes it, a MAC we add verifies with the key, with or without a
        /// FINGERPRINT after it, and not with another key; flipping any byte it covers breaks
        /// it (except the header length, which the MAC computation rewrites, RFC 8489 §14.5).
        #[test]
        fn integrity_round_trips_and_covers_every_byte(
            attrs in proptest::collection::vec(
                ((0x8000u16..0xffff).prop_filter("integrity or fingerprint", |t| {
                    ![0x8028, 0x001c, 0x0008].contains(t)
                }),
                 proptest::collection::vec(any::<u8>(), 0..24)),
                0..5,
            ),
            sha256 in any::<bool>(),
            fingerprint in any::<bool>(),
            key in any::<[u8; 16]>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let mut m = request();
            for (typ, value) in &attrs {
                m.add(AttrType(*typ), value);
            }
            let integrity = if sha256 { Integrity::Sha256 } else { Integrity::Sha1 };
            add_integrity(&mut m, &key, integrity);
            let covered = m.raw.len();
            if fingerprint {
                FINGERPRINT.add_to(&mut m).unwrap();
            }
            prop_assert_eq!(verify_integrity(&m, &key), Ok(integrity));
            let mut other = key;
            other[0] ^= 1;
            prop_assert!(verify_integrity(&m, &other).is_err());
            let at = flip.index(covered);
            if !(2..4).contains(&at) {
                let mut broken = m.clone();
                broken.raw[at] ^= 0x01;
                prop_assert!(verify_integrity(&broken, &key).is_err(), "byte {} of {}", at, covered);
            }
        }

        #[test]
        fn arbitrary_bytes_never_verify_or_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..128),
            key in any::<[u8; 16]>(),
        ) {
            let mut m = Message::new();
            m.raw = raw;
            prop_assert!(verify_integrity(&m, &key).is_err());
        }
    }
}
