//! Long-term credentials (RFC 8489 §9.2), TURN REST API secrets and stateless nonces.
//!
//! Pure and synchronous: no sockets, no clock reads (the caller passes `now_unix`), and
//! nothing kept per client, so one [`Auth`] is built from the config and shared via `Arc`.
//! Every secret comparison is constant-time (`subtle`).
//!
//! Usernames and passwords are used byte for byte, without the OpaqueString profile
//! (RFC 8265) that RFC 8489 §9.2.2 asks for, as coturn does.

pub mod redis;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::digest::Output;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
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
    /// Forged, malformed or issued to another client address: answer 438 with a fresh
    /// nonce too (RFC 8489 §9.2.4: the nonce is not valid), so an honest client recovers.
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
        let nonce_secret = (settings.nonce_secret)
            .unwrap_or_else(|| crate::random::os_random::<[u8; 32]>().to_vec());
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

    /// The name `user-quota` counts `username` under: the user part of a REST username
    /// (after the separator), which stays the same while the expiry in front of it changes
    /// with every minting; otherwise the name itself (a static user, and a bare REST
    /// timestamp, which names nobody: counting every such client as one user would let one
    /// of them use up everybody's quota, so `max-allocations-per-ip` is what bounds them).
    pub fn quota_user<'u>(&self, username: &'u str) -> &'u str {
        if self.users.contains_key(username)
            || self.secrets.is_empty()
            || rest_expiry(username, self.rest_separator).is_none()
        {
            return username;
        }
        (username.split_once(self.rest_separator)).map_or(username, |(_, user)| user)
    }

    /// A stateless nonce bound to `client` (RFC 8489 §9.2.1 leaves the format to the server):
    /// hex of issue time (u64 big-endian) and the first 12 bytes of
    /// HMAC-SHA256(nonce secret, time || client IP || port). Lowercase hex can never start
    /// with the "obMatJos2" cookie, so it advertises no RFC 8489 security features.
    pub fn make_nonce(&self, now_unix: u64, client: SocketAddr) -> String {
        let mut raw = [0u8; NONCE_LEN / 2];
        raw[..8].copy_from_slice(&now_unix.to_be_bytes());
        raw[8..].copy_from_slice(&self.nonce_tag(now_unix, client)[..NONCE_MAC_LEN]);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut nonce = String::with_capacity(NONCE_LEN);
        for b in raw {
            nonce.push(char::from(HEX[usize::from(b >> 4)]));
            nonce.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        nonce
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
/// When a NONCE made by [`Auth::make_nonce`] says it was issued (Unix seconds); check it
/// with [`Auth::check_nonce`] first.
pub fn nonce_issued(nonce: &[u8]) -> Option<u64> {
    let raw = decode_hex::<{ NONCE_LEN / 2 }>(nonce)?;
    Some(raw[..8].iter().fold(0u64, |t, &b| t << 8 | u64::from(b)))
}

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
mod tests;
