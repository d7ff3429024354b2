//! The TURN allocation manager (RFC 8656), sans-IO.

pub mod peer_rules;
