//! Long-term credentials (RFC 8489 §9.2), TURN REST API secrets and stateless nonces.
//! (Being written.)
