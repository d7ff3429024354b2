//! What an Allocate carries between its two phases (RFC 8656 §7.1): checked and charged in
//! [`Manager::allocate`](super::Manager), completed once the event loop has bound its relay
//! sockets. A leaf, so the manager and its handlers (`methods.rs`) both use it.

use stun::message::Message;

use super::quota::Holder;
use super::{FiveTuple, PortChoice};
use crate::auth::{Integrity, Key};

/// Who a request authenticated as.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) key: Key,
    pub(super) integrity: Integrity,
}

/// What an Allocate asked for, once its attributes are checked.
#[derive(Debug)]
pub(super) struct AllocateRequest {
    pub(super) families: Vec<u8>,
    pub(super) missing_family: Option<u8>,
    pub(super) port: PortChoice,
    pub(super) token: Option<[u8; 8]>,
    pub(super) lifetime: Option<u32>,
}

/// An Allocate between [`Answer::Bind`](super::Answer::Bind) and
/// [`Manager::allocate_bound`]: what was checked and charged before its sockets were asked for.
#[derive(Debug)]
pub(super) struct PendingAllocate {
    pub(super) tuple: FiveTuple,
    pub(super) transaction: [u8; 12],
    pub(super) creds: Credentials,
    pub(super) ask: AllocateRequest,
    /// Whose quotas it is charged to, and how many units were taken.
    pub(super) holder: Holder,
    pub(super) units: usize,
    /// It claimed a reservation (RESERVATION-TOKEN): one socket, the reserved port.
    pub(super) claimed: bool,
    /// Sockets asked for.
    pub(super) wanted: usize,
}

impl PendingAllocate {
    pub(super) fn is_for(&self, tuple: FiveTuple, req: &Message) -> bool {
        self.tuple == tuple && self.transaction == req.transaction_id.0
    }
}
