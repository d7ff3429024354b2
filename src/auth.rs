//! Long-term credentials (RFC 8489 §9.2), TURN REST API secrets and stateless nonces.
//!
//! Pure and synchronous: no sockets, no clock reads (the caller passes `now_unix`), and
//! nothing kept per client, so one [`Auth`] is built from the config and shared via `Arc`.
//! Every secret comparison is constant-time (`subtle`).
//!
//! Usernames and passwords are used byte for byte, without the OpaqueString profile
//! (RFC 8265) that RFC 8489 §9.2.2 asks for, as coturn does.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::digest::Output;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::Rng;
use sha1::Sha1;
use sha2::Sha256;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, AttrType,
};
use stun::message::{ATTRIBUTE_HEADER_SIZE, MESSAGE_HEADER_SIZE, Message};
use subtle::ConstantTimeEq;

/// 16-byte long-term key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub type Key = [u8; 16];

/// Default REST username separator, `<expiry>:<user>`, as in coturn.
pub const DEFAULT_REST_SEPARATOR: char = ':';
/// Default nonce lifetime: long enough for a session's refreshes, short enough to limit replay.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(600);
/// An authentic nonce dated this far ahead (another server of the fleet with a fast clock) is
/// still accepted; further ahead it is stale.
const NONCE_FUTURE_SKEW_SECS: u64 = 5;
/// Bytes of HMAC-SHA256 kept in a nonce: 96 bits is plenty against forgery.
const NONCE_MAC_LEN: usize = 12;
/// A nonce is hex of issue time (8 bytes) and MAC: 40 printable chars, under RFC 8489's 128.
const NONCE_LEN: usize = 2 * (8 + NONCE_MAC_LEN);
const SHA1_LEN: usize = 20;

/// What the caller builds from the config to make an [`Auth`].
#[derive(Clone)]
pub struct AuthSettings {
    /// The REALM sent in challenges and mixed into every key.
    pub realm: String,
    /// Static users: name -> plain password, or `0x` + 32 hex digits = the MD5 key itself
    /// (coturn style, so the config need not hold the password).
    pub users: std::collections::BTreeMap<String, String>,
    /// TURN REST API `static-auth-secret`s: the first mints, all verify (rotation).
    pub secrets: Vec<String>,
    /// Separator in REST usernames `<expiry-unix-seconds>[<sep><user>]`.
    pub rest_separator: char,
    /// Key for nonce MACs. Share it across a fleet so any server accepts another's nonces;
    /// `None` draws 32 random bytes at start.
    pub nonce_secret: Option<Vec<u8>>,
    /// How long a nonce stays valid before the client is told 438 Stale Nonce.
    pub nonce_lifetime: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            realm: String::new(),
            users: Default::default(),
            secrets: Vec::new(),
            rest_separator: DEFAULT_REST_SEPARATOR,
            nonce_secret: None,
            nonce_lifetime: DEFAULT_NONCE_LIFETIME,
        }
    }
}

/// Why credentials were refused; every variant goes on the wire as 401 Unauthorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No static user and no valid REST username by that name.
    #[error("unknown user")]
    UnknownUser,
    /// A REST username whose expiry time has passed.
    #[error("REST credentials expired")]
    Expired,
    /// MESSAGE-INTEGRITY(-SHA256) missing, malformed or not matching the key.
    #[error("message integrity check failed")]
    BadIntegrity,
}

/// Outcome of [`Auth::check_nonce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this client, and fresh.
    Valid,
    /// Ours and for this client, but expired (or dated too far ahead): answer 438.
    Stale,
    /// Forged, malformed or issued to another client address: answer 401.
    Invalid,
}

/// Which integrity attribute a request carried; answer with the same one (RFC 8489 §9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// MESSAGE-INTEGRITY, HMAC-SHA1 (RFC 8489 §14.5).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256, HMAC-SHA256 (RFC 8489 §14.6).
    Sha256,
}

/// The credential store: immutable after [`Auth::new`], `Send + Sync`.
pub struct Auth {
    realm: String,
    users: HashMap<String, Key>,
    secrets: Vec<Hmac<Sha1>>,
    rest_separator: char,
    nonce_mac: Hmac<Sha256>,
    nonce_lifetime_secs: u64,
}

impl fmt::Debug for Auth {
    /// Never prints keys or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("secrets", &self.secrets.len())
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Precomputes the static users' keys and the HMAC states of every secret.
    pub fn new(settings: AuthSettings) -> Auth {
        let realm = settings.realm;
        let users = (settings.users.iter())
            .map(|(name, pass)| {
                let key = hex_key(pass).unwrap_or_else(|| long_term_key(name, &realm, pass));
                (name.clone(), key)
            })
            .collect();
        let secrets = settings
            .secrets
            .iter()
            .map(|s| keyed(s.as_bytes()))
            .collect();
        let nonce_secret = settings.nonce_secret.unwrap_or_else(|| {
            // ThreadRng is a CSPRNG seeded from the OS.
            let mut bytes = vec![0; 32];
            rand::rng().fill(&mut bytes[..]);
            bytes
        });
        Auth {
            users,
            secrets,
            rest_separator: settings.rest_separator,
            nonce_mac: keyed(&nonce_secret),
            nonce_lifetime_secs: settings.nonce_lifetime.as_secs(),
            realm,
        }
    }

    /// The REALM to send in 401 challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Candidate keys for `username` at `now_unix`: the static user's key and/or one key per
    /// REST secret when the name is an unexpired REST username. The caller tries each with
    /// [`verify_integrity`]; several candidates exist only while secrets rotate.
    pub fn keys_for(&self, username: &str, now_unix: u64) -> Result<Vec<Key>, AuthError> {
        let mut keys = Vec::with_capacity(1 + self.secrets.len());
        keys.extend(self.users.get(username).copied());
        let mut expired = false;
        if !self.secrets.is_empty()
            && let Some(expiry) = rest_expiry(username, self.rest_separator)
        {
            if expiry >= now_unix {
                keys.extend(self.secrets.iter().map(|secret| {
                    long_term_key(username, &self.realm, &rest_password(secret, username))
                }));
            } else {
                expired = true;
            }
        }
        match (keys.is_empty(), expired) {
            (false, _) => Ok(keys),
            (true, true) => Err(AuthError::Expired),
            (true, false) => Err(AuthError::UnknownUser),
        }
    }

    /// Mints TURN REST credentials valid for `ttl_secs` (draft-uberti-behave-turn-rest §2.2):
    /// username `<now+ttl>[<sep><user>]`, password base64(HMAC-SHA1(first secret, username)).
    /// `None` when no secret is configured.
    pub fn mint_rest(
        &self,
        user: Option<&str>,
        now_unix: u64,
        ttl_secs: u64,
    ) -> Option<(String, String)> {
        let secret = self.secrets.first()?;
        let mut username = now_unix.saturating_add(ttl_secs).to_string();
        if let Some(user) = user {
            username.push(self.rest_separator);
            username.push_str(user);
        }
        let password = rest_password(secret, &username);
        Some((username, password))
    }

    /// A stateless nonce bound to `client` (RFC 8489 §9.2.1 leaves the format to the server):
    /// hex of issue time (u64 big-endian) and the first 12 bytes of
    /// HMAC-SHA256(nonce secret, time || client IP || port). Lowercase hex can never start
    /// with the "obMatJos2" cookie, so it advertises no RFC 8489 security features.
    pub fn make_nonce(&self, now_unix: u64, client: SocketAddr) -> String {
        let mut raw = [0u8; NONCE_LEN / 2];
        raw[..8].copy_from_slice(&now_unix.to_be_bytes());
        raw[8..].copy_from_slice(&self.nonce_tag(now_unix, client)[..NONCE_MAC_LEN]);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks a NONCE made by [`Auth::make_nonce`] here or on a server sharing the secret.
    pub fn check_nonce(&self, nonce: &[u8], now_unix: u64, client: SocketAddr) -> NonceCheck {
        let Some(raw) = decode_hex::<{ NONCE_LEN / 2 }>(nonce) else {
            return NonceCheck::Invalid;
        };
        let (time, mac) = raw.split_at(8);
        let issued = time.iter().fold(0u64, |t, &b| t << 8 | u64::from(b));
        let expected = self.nonce_tag(issued, client);
        if !bool::from(mac.ct_eq(&expected[..NONCE_MAC_LEN])) {
            return NonceCheck::Invalid;
        }
        let too_old = issued.saturating_add(self.nonce_lifetime_secs) < now_unix;
        let too_new = issued > now_unix.saturating_add(NONCE_FUTURE_SKEW_SECS);
        if too_old || too_new {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    fn nonce_tag(&self, issued: u64, client: SocketAddr) -> Output<Sha256> {
        let mut mac = self.nonce_mac.clone();
        mac.update(&issued.to_be_bytes());
        // A dual-stack socket may report the same IPv4 client as ::ffff:a.b.c.d.
        match client.ip().to_canonical() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&client.port().to_be_bytes());
        mac.finalize().into_bytes()
    }
}

/// MD5(username ":" realm ":" password), the long-term key of RFC 8489 §9.2.2.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    let mut md5 = Md5::new();
    for part in [username, ":", realm, ":", password] {
        md5.update(part.as_bytes());
    }
    md5.finalize().into()
}

/// Verifies the request's MESSAGE-INTEGRITY-SHA256 (preferred when present, so a valid SHA1
/// cannot downgrade a bad SHA256) or MESSAGE-INTEGRITY against `key` (RFC 8489 §14.5, §14.6).
/// Only the first occurrence counts; the HMAC covers the message up to that attribute with
/// the header length ending right after it, which excludes a trailing FINGERPRINT.
pub fn verify_integrity(msg: &Message, key: &Key) -> Result<Integrity, AuthError> {
    verify_raw(&msg.raw, key)
}

/// Appends MESSAGE-INTEGRITY(-SHA256, full 32 bytes) to the response being built in `msg`
/// (started with `Message::new()` or `write_header`). Call it after every other attribute
/// and before FINGERPRINT.
pub fn add_integrity(msg: &mut Message, key: &Key, integrity: Integrity) {
    debug_assert!(!msg.attributes.0.iter().any(|a| a.typ == ATTR_FINGERPRINT));
    let start = MESSAGE_HEADER_SIZE + msg.length as usize;
    match integrity {
        Integrity::Sha1 => {
            let mac = integrity_mac::<Hmac<Sha1>>(key, &msg.raw, start, SHA1_LEN);
            msg.add(ATTR_MESSAGE_INTEGRITY, &mac.unwrap_or_default());
        }
        Integrity::Sha256 => {
            let mac = integrity_mac::<Hmac<Sha256>>(key, &msg.raw, start, 32);
            msg.add(ATTR_MESSAGE_INTEGRITY_SHA256, &mac.unwrap_or_default());
        }
    }
}

/// The walk behind [`verify_integrity`], over any key length (the SHA-256 password
/// algorithm of RFC 8489 §18.5.1.2 has 32-byte keys).
fn verify_raw(raw: &[u8], key: &[u8]) -> Result<Integrity, AuthError> {
    let (sha1, sha256) = find_integrity(raw);
    if let Some((start, value)) = sha256 {
        // RFC 8489 §14.6: truncated to at least 16 bytes, in whole words.
        let valid_len = (16..=32).contains(&value.len()) && value.len() % 4 == 0;
        let mac = integrity_mac::<Hmac<Sha256>>(key, raw, start, value.len());
        return match valid_len && mac_matches(mac.as_deref(), value) {
            true => Ok(Integrity::Sha256),
            false => Err(AuthError::BadIntegrity),
        };
    }
    if let Some((start, value)) = sha1
        && value.len() == SHA1_LEN
        && mac_matches(
            integrity_mac::<Hmac<Sha1>>(key, raw, start, SHA1_LEN).as_deref(),
            value,
        )
    {
        return Ok(Integrity::Sha1);
    }
    Err(AuthError::BadIntegrity)
}

/// Constant-time: does `value` equal the first `value.len()` bytes of `mac`?
fn mac_matches(mac: Option<&[u8]>, value: &[u8]) -> bool {
    mac.and_then(|mac| mac.get(..value.len()))
        .is_some_and(|prefix| bool::from(prefix.ct_eq(value)))
}

/// (offset, value) of an integrity attribute found in a message.
type Found<'a> = Option<(usize, &'a [u8])>;

/// Walks the attribute TLVs from offset 20, within both the buffer and the header's length,
/// and returns the first MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256. Stops at
/// MESSAGE-INTEGRITY-SHA256: only FINGERPRINT may follow it (RFC 8489 §14.6).
fn find_integrity(raw: &[u8]) -> (Found<'_>, Found<'_>) {
    let (mut sha1, mut sha256) = (None, None);
    let Some(&[hi, lo]) = raw.get(2..4) else {
        return (None, None);
    };
    let end = raw
        .len()
        .min(MESSAGE_HEADER_SIZE + usize::from(u16::from_be_bytes([hi, lo])));
    let mut pos = MESSAGE_HEADER_SIZE;
    while let Some(&[t0, t1, l0, l1]) = raw.get(pos..pos + ATTRIBUTE_HEADER_SIZE) {
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let value_start = pos + ATTRIBUTE_HEADER_SIZE;
        let Some(value) = raw
            .get(value_start..value_start + len)
            .filter(|_| value_start + len <= end)
        else {
            break;
        };
        let typ = AttrType(u16::from_be_bytes([t0, t1]));
        if typ == ATTR_MESSAGE_INTEGRITY && sha1.is_none() {
            sha1 = Some((pos, value));
        } else if typ == ATTR_MESSAGE_INTEGRITY_SHA256 {
            sha256 = Some((pos, value));
            break;
        }
        pos = value_start + len.next_multiple_of(4);
    }
    (sha1, sha256)
}

/// HMAC over `raw[..start]` with the header length rewritten to end after an integrity
/// attribute of `len` bytes at `start`, without touching `raw`. `None` if `raw` is too short.
fn integrity_mac<M: Mac + hmac::digest::KeyInit>(
    key: &[u8],
    raw: &[u8],
    start: usize,
    len: usize,
) -> Option<Output<M>> {
    let adjusted = (start + ATTRIBUTE_HEADER_SIZE + len).checked_sub(MESSAGE_HEADER_SIZE)?;
    let adjusted = u16::try_from(adjusted).ok()?;
    let mut mac: M = keyed(key);
    Mac::update(&mut mac, raw.get(..2)?);
    Mac::update(&mut mac, &adjusted.to_be_bytes());
    Mac::update(&mut mac, raw.get(4..start)?);
    Some(mac.finalize().into_bytes())
}

fn keyed<M: hmac::digest::KeyInit>(key: &[u8]) -> M {
    M::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The expiry of a REST username `<digits>[<sep>...]`, coturn style (a bare timestamp counts).
fn rest_expiry(username: &str, sep: char) -> Option<u64> {
    let stamp = username
        .split_once(sep)
        .map_or(username, |(stamp, _)| stamp);
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

fn rest_password(secret: &Hmac<Sha1>, username: &str) -> String {
    let mut mac = secret.clone();
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A coturn-style `0x` + 32 hex digits password is the key itself; anything else is plain.
fn hex_key(password: &str) -> Option<Key> {
    let hex = password.strip_prefix("0x")?.to_ascii_lowercase();
    decode_hex(hex.as_bytes())
}

/// Strict lowercase hex, so each nonce has exactly one spelling.
fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
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
}
