//! The kernel fast path on the worker side (#18): whether this process has it
//! ([`Kernel`], decided once at start from `[relay] offload`), and each worker's handle on
//! the kernel's channel maps ([`WorkerOffload`]), which carries out what its manager decides
//! ([`crate::turn::Manager::offload_apply`]) and reads back what the kernel relayed, into the
//! manager's counters and the worker's packet counters.
//!
//! Without the offload a worker has no handle and its manager tracks nothing: the data path
//! does no work for it. This binary has no kernel half yet (the eBPF program and its loader
//! come separately), so [`start`] says why it is off and every worker gets `None`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::{Counters, Event as Count};
use super::throttle::Throttle;
use crate::config::OffloadMode;
use crate::metrics::{Counted, Family, Report};
use crate::turn::offload::{OffloadCounts, OffloadMaps};
use crate::turn::{Event, Manager};

/// How often a worker reads the kernel's counts (also on every `/metrics` scrape and admin
/// listing, and once more when an entry leaves).
pub(super) const READ_EVERY: Duration = Duration::from_secs(5);

static ACTIVE: Family = Family::gauge(
    "offload_active",
    "1 when the kernel relays bound UDP channels by itself (relay.offload), else 0.",
);

/// Whether the kernel relays for this process, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffloadStatus {
    /// The kernel relays bound UDP channels.
    pub(crate) active: bool,
    /// Why not, when it does not.
    pub(crate) reason: Option<String>,
}

impl Counted for OffloadStatus {
    fn report(&self, report: &mut Report) {
        report.value(&ACTIVE, u64::from(self.active));
    }
}

/// The kernel half of the offload for this process: how workers reach its maps.
pub(super) struct Kernel {
    status: OffloadStatus,
}

/// Decides whether the kernel relays for this process, logging one line when `auto` finds
/// it cannot.
pub(super) fn start(mode: OffloadMode) -> Kernel {
    let reason = match mode {
        OffloadMode::Off => "relay.offload is \"off\"".to_owned(),
        OffloadMode::Auto => {
            let reason = "this binary has no kernel half yet (the eBPF program and its loader \
                          are not built in); every packet goes through user space"
                .to_owned();
            tracing::info!("relay.offload = \"auto\": off: {reason}");
            reason
        }
    };
    Kernel {
        status: OffloadStatus {
            active: false,
            reason: Some(reason),
        },
    }
}

impl Kernel {
    /// For `/metrics` and `/healthz`.
    pub(super) fn status(&self) -> &OffloadStatus {
        &self.status
    }

    /// Worker `worker`'s handle on the kernel's maps; `None` while the offload is off.
    pub(super) fn maps(&self, _worker: usize) -> Option<Box<dyn OffloadMaps>> {
        None
    }
}

/// One worker's handle on the kernel's maps, beside its shard's manager.
pub(super) struct WorkerOffload {
    maps: Box<dyn OffloadMaps>,
    counters: Arc<Counters>,
    /// When the counts are read next.
    read_at: Instant,
    warn: Throttle,
}

impl WorkerOffload {
    /// A handle counting into the worker's `counters`; the first reading is due
    /// [`READ_EVERY`] after `now`.
    pub(super) fn new(maps: Box<dyn OffloadMaps>, counters: Arc<Counters>, now: Instant) -> Self {
        Self {
            maps,
            counters,
            read_at: now + READ_EVERY,
            warn: Throttle::default(),
        }
    }

    /// Carries out one offload event of `manager`'s. An entry the kernel refuses (its maps
    /// are full) leaves the channel in user space, logged at most once per interval.
    pub(super) fn apply(&mut self, manager: &mut Manager, event: &Event) {
        match manager.offload_apply(self.maps.as_mut(), event) {
            Ok(new) => self.count(&new),
            Err(e) => (self.warn).warn(|| {
                tracing::warn!("the kernel refused a channel (it stays in user space): {e}")
            }),
        }
    }

    /// Reads what the kernel relayed when a reading is due at `now`, or at once with
    /// `force` (before a scrape or an admin listing). Call after the manager's events are
    /// carried out.
    pub(super) fn read(&mut self, manager: &mut Manager, now: Instant, force: bool) {
        if !force && now < self.read_at {
            return;
        }
        self.read_at = now + READ_EVERY;
        let new = manager.handle_offload_counts(self.maps.as_ref());
        self.count(&new);
    }

    /// Offloaded packets counted as user space counts its own: a client's ChannelData was
    /// received and relayed, a peer's datagram relayed.
    fn count(&self, new: &OffloadCounts) {
        if new.is_zero() {
            return;
        }
        self.counters
            .count_many(Count::Received, new.to_peer_packets);
        let relayed = new.to_peer_packets + new.to_client_packets;
        self.counters.count_many(Count::Relayed, relayed);
    }
}

#[cfg(test)]
mod tests;
