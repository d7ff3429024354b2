//! The mobile allocations of one manager (RFC 8016): their tickets' handles by 5-tuple and
//! back, and where they went for the event loop to publish. A leaf: the manager holds it,
//! its handlers in `mobility.rs` change it.

use std::collections::VecDeque;

use super::ticket::{Handle, TicketKey};
use super::{FastMap, FiveTuple};

/// Where a mobile allocation went, for the event loop ([`crate::turn::Manager::poll_moved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The allocation of `from` now belongs to `to`.
    To {
        /// Its old 5-tuple.
        from: FiveTuple,
        /// Its new one.
        to: FiveTuple,
    },
    /// The mobile allocation of this 5-tuple ended.
    Gone(FiveTuple),
}

/// One mobile allocation's ticket state: the handle its one ticket names, for its whole
/// life.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mobile {
    pub(super) handle: Handle,
}

/// The mobile allocations of one manager, by ticket handle and by 5-tuple.
#[derive(Debug)]
pub(super) struct Mobility {
    /// This manager's worker index, named in its tickets.
    pub(super) worker: u16,
    pub(super) key: TicketKey,
    pub(super) by_handle: FastMap<Handle, FiveTuple>,
    pub(super) by_tuple: FastMap<FiveTuple, Mobile>,
    pub(super) moved: VecDeque<Moved>,
    /// Mobile TCP/TLS allocations whose connection closed so far: numbers their detached
    /// 5-tuples (`mobility.rs`).
    pub(super) detached: u64,
}

impl Default for Mobility {
    fn default() -> Self {
        Self {
            worker: 0,
            key: TicketKey::random(),
            by_handle: FastMap::default(),
            by_tuple: FastMap::default(),
            moved: VecDeque::new(),
            detached: 0,
        }
    }
}
