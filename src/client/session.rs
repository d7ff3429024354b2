//! [`Session`]: what a request is signed with under long-term credentials (RFC 8489 §9.2):
//! USERNAME, the REALM and NONCE of the server's last 401 or 438, and MESSAGE-INTEGRITY over
//! the key MD5(user:realm:pass).

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, AttrType};
use stun::message::{Message, Setter};
use stun::textattrs::TextAttribute;

use super::error::ClientError;
use crate::auth::{Integrity, Key, add_integrity, long_term_key};

/// What a client signs with: the username, the server's realm and nonce, and the long-term
/// key they make with the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    username: String,
    realm: String,
    nonce: String,
    key: Key,
    integrity: Integrity,
    /// USERNAME, REALM or NONCE left out when signing, to test a server's checks.
    left_out: Option<AttrType>,
}

impl Session {
    /// A session for `username` with `password` in `realm`, signing with MESSAGE-INTEGRITY
    /// (HMAC-SHA1, which every TURN server accepts).
    pub fn new(username: &str, password: &str, realm: &str, nonce: &str) -> Session {
        Session::with_key(
            username,
            long_term_key(username, realm, password),
            realm,
            nonce,
        )
    }

    /// A session with the key given as is (a wrong one, to be refused, say).
    pub fn with_key(username: &str, key: Key, realm: &str, nonce: &str) -> Session {
        Session {
            username: username.to_owned(),
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            key,
            integrity: Integrity::Sha1,
            left_out: None,
        }
    }

    /// The same session signing with `integrity` (MESSAGE-INTEGRITY-SHA256 for
    /// [`Integrity::Sha256`]).
    pub fn signing_with(mut self, integrity: Integrity) -> Session {
        self.integrity = integrity;
        self
    }

    /// The same session leaving `attr` (USERNAME, REALM or NONCE) out of what it signs with,
    /// MESSAGE-INTEGRITY still added: a request a server must refuse with 400 (RFC 8489
    /// §9.2.4). Any other attribute type changes nothing.
    pub fn leaving_out(mut self, attr: AttrType) -> Session {
        self.left_out = Some(attr);
        self
    }

    /// The username sent in USERNAME.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The realm of the last challenge.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The nonce of the last challenge.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The long-term key, MD5(username:realm:password).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Which integrity attribute requests carry.
    pub fn integrity(&self) -> Integrity {
        self.integrity
    }

    /// Appends USERNAME, REALM, NONCE and MESSAGE-INTEGRITY(-SHA256) to the message being
    /// built in `m`; FINGERPRINT, if wanted, goes after.
    pub fn sign(&self, m: &mut Message) -> Result<(), ClientError> {
        for (typ, text, what) in [
            (ATTR_USERNAME, &self.username, "USERNAME"),
            (ATTR_REALM, &self.realm, "REALM"),
            (ATTR_NONCE, &self.nonce, "NONCE"),
        ] {
            if self.left_out == Some(typ) {
                continue;
            }
            TextAttribute::new(typ, text.clone())
                .add_to(m)
                .map_err(|_| ClientError::Encode(what))?;
        }
        add_integrity(m, &self.key, self.integrity);
        Ok(())
    }
}
