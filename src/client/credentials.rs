//! [`Client`]: long-term credentials (RFC 8489 §9.2) and the [`Session`] a challenge gives
//! them. The first request goes unsigned; its 401 brings REALM and NONCE; every later request
//! is signed with them; a 438 Stale Nonce brings a fresh nonce to sign with.

use stun::agent::TransactionId;
use stun::message::Message;

use super::error::ClientError;
use super::request::Request;
use super::response::Response;
use super::session::Session;
use crate::auth::Integrity;

/// A client's credentials and, once challenged, its session.
#[derive(Debug, Clone)]
pub struct Client {
    username: String,
    password: String,
    integrity: Integrity,
    session: Option<Session>,
}

impl Client {
    /// A client with long-term credentials and no session yet: its first request goes
    /// unsigned to draw the 401.
    pub fn new(username: &str, password: &str) -> Client {
        Client {
            username: username.to_owned(),
            password: password.to_owned(),
            integrity: Integrity::Sha1,
            session: None,
        }
    }

    /// Signs with `integrity` from now on.
    pub fn signing_with(mut self, integrity: Integrity) -> Client {
        self.integrity = integrity;
        self.session = self.session.map(|s| s.signing_with(integrity));
        self
    }

    /// The session of the last challenge, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Takes `realm` and `nonce` as if a challenge had brought them (a nonce known ahead,
    /// as the benchmarks mint it).
    pub fn set_session(&mut self, realm: &str, nonce: &str) {
        let session = Session::new(&self.username, &self.password, realm, nonce);
        self.session = Some(session.signing_with(self.integrity));
    }

    /// `req` with a fresh random transaction ID; see [`Client::request_with_id`].
    pub fn request(&self, req: &Request) -> Result<Message, ClientError> {
        self.request_with_id(req, TransactionId::new())
    }

    /// `req` with transaction ID `id`, signed if it is a request other than Binding and a
    /// challenge has been seen.
    pub fn request_with_id(
        &self,
        req: &Request,
        id: TransactionId,
    ) -> Result<Message, ClientError> {
        let session = self.session.as_ref().filter(|_| req.wants_credentials());
        req.build(id, session)
    }

    /// Learns from a response: a 401 or 438 carrying a NONCE (and REALM, or the realm known
    /// already) sets the session. `true` if that changed what requests are signed with, so
    /// sending the request again is worth it; `false` for any other response, and for a
    /// challenge with the same realm and nonce (the credentials themselves were refused).
    pub fn handle_challenge(&mut self, response: &Response) -> bool {
        if !matches!(response.error_code(), Some(401 | 438)) {
            return false;
        }
        let Some(nonce) = response.nonce.as_deref() else {
            return false;
        };
        let known = self.session.as_ref().map(Session::realm);
        let Some(realm) = response.realm.as_deref().or(known) else {
            return false;
        };
        if let Some(s) = &self.session
            && s.realm() == realm
            && s.nonce() == nonce
        {
            return false;
        }
        let realm = realm.to_owned();
        self.set_session(&realm, nonce);
        true
    }
}
