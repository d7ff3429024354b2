//! Long-term credentials on a request (RFC 8489 §9.2.4): [`Manager::check_credentials`]
//! decides, without touching the manager, and [`Manager::authenticate`] records a failure
//! and builds its challenge (401 or 438, with REALM and a fresh NONCE bound to the client).

use std::time::Instant;

use stun::attributes::{
    ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
};
use stun::message::{Message, Setter};
use stun::textattrs::TextAttribute;

use super::manager::Manager;
use super::pending::Credentials;
use super::tcp_link::nonce_client;
use super::{FiveTuple, attrs};
use crate::auth::{AuthError, NonceCheck, verify_integrity};
use crate::stun::response;

/// Why a request's credentials failed: the error code to answer (a challenge, or 400 for
/// a request without USERNAME, REALM or NONCE), the user named, if any, and the reason
/// counted.
pub(super) struct Refused<'r> {
    code: u16,
    user: &'r str,
    reason: &'static str,
}

impl Manager {
    /// The credentials `req` from `tuple` carries, checked in RFC 8489 §9.2.4's order: a
    /// nonce this server made for this client and not stale, this realm, a known user and
    /// a MESSAGE-INTEGRITY made with its key. Changes nothing.
    pub(super) fn check_credentials<'r>(
        &self,
        now: Instant,
        tuple: FiveTuple,
        req: &'r Message,
    ) -> Result<Credentials, Refused<'r>> {
        let refused = |code, user, reason| Refused { code, user, reason };
        let unix = self.unix(now);
        if !(req.contains(ATTR_MESSAGE_INTEGRITY) || req.contains(ATTR_MESSAGE_INTEGRITY_SHA256)) {
            return Err(refused(401, "", ""));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            attrs::value(req, ATTR_USERNAME),
            attrs::value(req, ATTR_REALM),
            attrs::value(req, ATTR_NONCE),
        ) else {
            return Err(refused(400, "", "bad_request"));
        };
        if self.auth.check_nonce(nonce, unix, nonce_client(tuple)) != NonceCheck::Valid {
            return Err(refused(438, "", "stale_nonce"));
        }
        let username = match std::str::from_utf8(username) {
            Ok(u) if realm == self.auth.realm().as_bytes() => u,
            _ => return Err(refused(401, "", "wrong_realm")),
        };
        let keys = self.auth.keys_for(username, unix).map_err(|e| match e {
            AuthError::Expired => refused(401, username, "expired"),
            _ => refused(401, username, "unknown_user"),
        })?;
        for key in keys {
            if let Ok(integrity) = verify_integrity(req, &key) {
                return Ok(Credentials {
                    username: username.to_owned(),
                    key,
                    integrity,
                });
            }
        }
        Err(refused(401, username, "bad_integrity"))
    }

    /// [`Manager::check_credentials`], counting a failure; on failure the error response
    /// is already built.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
    ) -> Result<Credentials, ()> {
        let Refused { code, user, reason } = match self.check_credentials(now, tuple, req) {
            Ok(creds) => return Ok(creds),
            Err(refused) => refused,
        };
        if reason.is_empty() {
            // The first round trip of every session: normal, so only at trace (-vv).
            tracing::trace!(client = %tuple.client, "401 challenge: no credentials yet");
            self.metrics.challenges += 1;
        } else {
            self.metrics.auth_failed(reason);
            tracing::debug!(client = %tuple.client, user, reason, "authentication failed");
        }
        if code == 400 {
            self.error(req, 400);
            response::finish(&mut self.response, req);
        } else {
            self.challenge(now, tuple, req, code);
        }
        Err(())
    }

    /// 401 or 438 with REALM and a fresh NONCE, and no MESSAGE-INTEGRITY.
    pub(super) fn challenge(&mut self, now: Instant, tuple: FiveTuple, req: &Message, code: u16) {
        let nonce = self.auth.make_nonce(self.unix(now), nonce_client(tuple));
        let realm = self.auth.realm().to_owned();
        self.error(req, code);
        let _ = TextAttribute::new(ATTR_REALM, realm).add_to(&mut self.response);
        let _ = TextAttribute::new(ATTR_NONCE, nonce).add_to(&mut self.response);
        response::finish(&mut self.response, req);
    }
}
