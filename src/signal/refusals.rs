//! Counters of what signaling refused, for `/metrics`: upgrades and API calls refused by the
//! origin and token rules, and the error frames sent back, by code.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::protocol::ErrorCode;

/// Every error code, in the order they are rendered.
const CODES: [ErrorCode; 9] = ErrorCode::ALL;

/// Why the HTTP guard refused a `/ws` upgrade or an `/api/ice-servers` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The Origin is neither listed nor this server's own (403).
    Origin,
    /// No token, or one that is malformed, forged, expired or for another room or
    /// namespace (401).
    Token,
}

/// The counters; one per hub.
#[derive(Debug, Default)]
pub struct Refusals {
    origin: AtomicU64,
    token: AtomicU64,
    errors: [AtomicU64; CODES.len()],
}

impl Refusals {
    /// Counts one refused upgrade or API call.
    pub fn refused(&self, why: Refusal) {
        match why {
            Refusal::Origin => &self.origin,
            Refusal::Token => &self.token,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts one error frame sent to a client.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Refusals by reason (`origin`, `token`).
    pub fn refused_counts(&self) -> [(&'static str, u64); 2] {
        [
            ("origin", self.origin.load(Relaxed)),
            ("token", self.token.load(Relaxed)),
        ]
    }

    /// Error frames sent, by wire code.
    pub fn error_counts(&self) -> Vec<(&'static str, u64)> {
        CODES
            .iter()
            .zip(&self.errors)
            .map(|(code, n)| (code.as_str(), n.load(Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_code() {
        let r = Refusals::default();
        r.refused(Refusal::Origin);
        r.refused(Refusal::Token);
        r.refused(Refusal::Token);
        r.error(ErrorCode::RoomFull);
        assert_eq!(r.refused_counts(), [("origin", 1), ("token", 2)]);
        let errors = r.error_counts();
        assert_eq!(errors.len(), CODES.len());
        assert!(errors.contains(&("room_full", 1)));
        assert!(errors.contains(&("too_large", 0)));
    }
}
