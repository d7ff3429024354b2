//! RFC 8016's MOBILITY-TICKET value, as rturn makes and reads it: pure bytes in, bytes out.
//!
//! A ticket names the worker whose manager holds the allocation, a random handle into that
//! manager's table of mobile allocations, and a MAC over both with a key every worker
//! shares ([`TicketKey`], random per process). The MAC lets any worker tell a ticket this
//! server made from a forged or garbled one without asking the owner, so only a genuine
//! ticket is ever passed to another worker; the handle (112 random bits) is what the owner
//! looks up, so a ticket cannot be guessed, and a genuine one still moves nothing without the
//! credentials of the allocation's user (RFC 8016 §3.2, checked by the manager).
//!
//! On the wire it is 32 ASCII characters (base64url of 24 bytes): coturn's clients keep the
//! ticket as a C string of at most 32 bytes, so it may hold no zero byte.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stun::attributes::AttrType;

/// MOBILITY-TICKET (RFC 8016 §4): comprehension-optional.
pub const ATTR_MOBILITY_TICKET: AttrType = AttrType(0x8030);

/// Raw ticket bytes: worker (2), handle, MAC (8).
const RAW: usize = 24;
const WORKER: usize = 2;
const HANDLE: usize = 14;
const MAC: usize = RAW - WORKER - HANDLE;
/// The ticket's length on the wire.
pub const WIRE_LEN: usize = 32;

/// The random handle a manager files a mobile allocation under.
pub type Handle = [u8; HANDLE];

/// The key tickets are signed with, shared by every worker of one process.
#[derive(Clone)]
pub struct TicketKey([u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(crate::random::os_random())
    }

    /// A key from fixed bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("any length"));
        mac.update(body);
        mac
    }

    /// The ticket for allocation `handle` of `worker`, as sent in MOBILITY-TICKET.
    pub fn seal(&self, worker: u16, handle: &Handle) -> [u8; WIRE_LEN] {
        let mut raw = [0u8; RAW];
        raw[..WORKER].copy_from_slice(&worker.to_be_bytes());
        raw[WORKER..WORKER + HANDLE].copy_from_slice(handle);
        let tag = self.mac(&raw[..WORKER + HANDLE]).finalize().into_bytes();
        raw[WORKER + HANDLE..].copy_from_slice(&tag[..MAC]);
        let mut wire = [0u8; WIRE_LEN];
        // 24 bytes are exactly 32 base64 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut wire);
        wire
    }

    /// The worker and handle of a ticket this key sealed; `None` for anything else (wrong
    /// length, not base64url, MAC mismatch).
    pub fn open(&self, wire: &[u8]) -> Option<(u16, Handle)> {
        if wire.len() != WIRE_LEN {
            return None;
        }
        let mut raw = [0u8; RAW + 3];
        if URL_SAFE_NO_PAD.decode_slice(wire, &mut raw).ok()? != RAW {
            return None;
        }
        (self.mac(&raw[..WORKER + HANDLE]))
            .verify_truncated_left(&raw[WORKER + HANDLE..RAW])
            .ok()?;
        let mut handle = [0u8; HANDLE];
        handle.copy_from_slice(&raw[WORKER..WORKER + HANDLE]);
        Some((u16::from_be_bytes([raw[0], raw[1]]), handle))
    }
}

/// A fresh random handle.
pub fn new_handle() -> Handle {
    crate::random::os_random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_ticket_opens_to_its_worker_and_handle() {
        let key = TicketKey::from_bytes([7; 32]);
        let handle = [3u8; HANDLE];
        let wire = key.seal(1023, &handle);
        assert!(wire.iter().all(|b| b.is_ascii_graphic()), "a C string");
        assert_eq!(key.open(&wire), Some((1023, handle)));
    }

    #[test]
    fn forged_garbled_and_foreign_tickets_do_not_open() {
        let key = TicketKey::from_bytes([7; 32]);
        let wire = key.seal(1, &[9; HANDLE]);
        // Another process's key.
        assert_eq!(TicketKey::from_bytes([8; 32]).open(&wire), None);
        // Any one character changed (worker, handle or MAC).
        for i in 0..WIRE_LEN {
            let mut bad = wire;
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(key.open(&bad), None, "character {i}");
        }
        // Wrong lengths, not base64, empty.
        assert_eq!(key.open(&wire[..31]), None);
        assert_eq!(key.open(&[wire.as_slice(), b"A"].concat()), None);
        assert_eq!(key.open(&[b'!'; WIRE_LEN]), None);
        assert_eq!(key.open(b""), None);
    }

    #[test]
    fn handles_differ() {
        assert_ne!(new_handle(), new_handle());
    }
}
