//! Requests for the benchmarks, built and signed by `rturn::client` as a client would: fixed
//! transaction IDs, a fixed nonce secret and a fixed clock, so every run measures the same
//! bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::Criterion;
use rturn::auth::{Auth, AuthSettings, Integrity};
use rturn::client::{Request, Session};
use stun::agent::TransactionId;

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

/// The static user at `client` with the nonce `auth` issued it at [`UNIX_START`], as after
/// a 401, signing with MESSAGE-INTEGRITY(-SHA256) per `integrity`.
pub(crate) fn signer(auth: &Auth, client: SocketAddr, integrity: Integrity) -> Session {
    let nonce = auth.make_nonce(UNIX_START, client);
    Session::new(USER.0, USER.1, REALM, &nonce).signing_with(integrity)
}

/// The wire bytes of `req` with transaction ID `id`: its attributes, then USERNAME, REALM,
/// NONCE and MESSAGE-INTEGRITY if signed, then FINGERPRINT.
pub(crate) fn request(req: &Request, id: u32, signer: Option<&Session>) -> Vec<u8> {
    let mut tid = [0x5a; 12];
    tid[8..].copy_from_slice(&id.to_be_bytes());
    (req.build(TransactionId(tid), signer))
        .expect("benchmark requests encode")
        .raw
}
