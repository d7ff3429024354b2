//! Requests for the benchmarks, built and signed as a client would: fixed transaction IDs,
//! a fixed nonce secret and a fixed clock, so every run measures the same bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::Criterion;
use rturn::auth::{Auth, AuthSettings, Integrity, Key, add_integrity, long_term_key};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::fingerprint::FINGERPRINT;
use stun::message::{CLASS_REQUEST, Message, MessageType, Method, Setter};
use stun::textattrs::TextAttribute;

/// The realm of the one static user.
const REALM: &str = "example.org";
/// The one static user and its password.
const USER: (&str, &str) = ("alice", "wonderland");
/// The virtual clock in unix seconds at the managers' start; nonces are minted for it.
pub(crate) const UNIX_START: u64 = 1_700_000_000;

/// Criterion configured from the command line, with short measurement times: these are
/// nanosecond operations, and the whole `cargo bench` should take well under two minutes.
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

/// The credential store every benchmark uses: one static user, a fixed nonce secret.
pub(crate) fn auth() -> Auth {
    Auth::new(AuthSettings {
        realm: REALM.into(),
        users: BTreeMap::from([(USER.0.to_owned(), USER.1.to_owned())]),
        nonce_secret: Some(b"benchmark nonce secret".to_vec()),
        ..AuthSettings::default()
    })
}

/// A client that got a nonce from a 401 and signs with the user's long-term key.
pub(crate) struct Signer {
    /// The nonce `auth` issued to the client at [`UNIX_START`].
    pub(crate) nonce: String,
    /// MD5(user:realm:password), RFC 8489 §9.2.2.
    pub(crate) key: Key,
    integrity: Integrity,
}

impl Signer {
    /// The static user at `client`, signing with MESSAGE-INTEGRITY(-SHA256) per `integrity`.
    pub(crate) fn new(auth: &Auth, client: SocketAddr, integrity: Integrity) -> Self {
        Self {
            nonce: auth.make_nonce(UNIX_START, client),
            key: long_term_key(USER.0, REALM, USER.1),
            integrity,
        }
    }
}

/// The wire bytes of a `method` request with transaction ID `id`: the attributes `attrs`
/// adds, then USERNAME, REALM, NONCE and MESSAGE-INTEGRITY if signed, then FINGERPRINT.
pub(crate) fn request(
    method: Method,
    id: u32,
    signer: Option<&Signer>,
    attrs: impl FnOnce(&mut Message),
) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = MessageType::new(method, CLASS_REQUEST);
    let mut tid = [0x5a; 12];
    tid[8..].copy_from_slice(&id.to_be_bytes());
    m.transaction_id = TransactionId(tid);
    m.write_header();
    attrs(&mut m);
    if let Some(signer) = signer {
        for (typ, text) in [
            (ATTR_USERNAME, USER.0),
            (ATTR_REALM, REALM),
            (ATTR_NONCE, signer.nonce.as_str()),
        ] {
            TextAttribute::new(typ, text.to_owned())
                .add_to(&mut m)
                .expect("username, realm and nonce are short");
        }
        add_integrity(&mut m, &signer.key, signer.integrity);
    }
    FINGERPRINT
        .add_to(&mut m)
        .expect("FINGERPRINT fits any request");
    m.raw
}
