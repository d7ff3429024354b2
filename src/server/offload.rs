//! The kernel fast path on the worker side (#18): whether this process has it
//! ([`Kernel`], decided once at start from `[relay] offload`), and each worker's handle on
//! the kernel's channel maps ([`WorkerOffload`]), which carries out what its manager decides
//! ([`crate::turn::Manager::offload_apply`]) and reads back what the kernel relayed, into the
//! manager's counters and the worker's packet counters.
//!
//! Without the offload a worker has no handle and its manager tracks nothing: the data path
//! does no work for it. With it, [`start`] has loaded the eBPF program ([`crate::offload`])
//! and attached it to the interfaces that hold the UDP listen and relay addresses; every
//! worker's handle writes the same kernel maps, under one mutex taken on ChannelBind, on
//! removal and on each reading of the counts, never per packet.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stats::{Counters, Event as Count};
use super::throttle::Throttle;
use crate::config::OffloadMode;
use crate::metrics::{Counted, Family, Report};
use crate::offload::Offload;
use crate::turn::offload::{ChannelEntry, OffloadCounts, OffloadMaps};
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

/// The kernel half of the offload for this process: how workers reach its maps. Dropping
/// it (after the workers) detaches the program.
pub(super) struct Kernel {
    status: OffloadStatus,
    loaded: Option<Arc<Mutex<Offload>>>,
}

/// Decides whether the kernel relays for this process: with `auto`, loads the program and
/// attaches it to the interfaces holding the `udp` listen addresses and the `relay_ips`, or
/// logs one line saying why not.
pub(super) fn start(mode: OffloadMode, udp: &[SocketAddr], relay_ips: &[IpAddr]) -> Kernel {
    let off = |reason: String| Kernel {
        status: OffloadStatus {
            active: false,
            reason: Some(reason),
        },
        loaded: None,
    };
    if mode == OffloadMode::Off {
        return off("relay.offload is \"off\"".to_owned());
    }
    match load(udp, relay_ips) {
        Ok(offload) => {
            let on: Vec<&str> = offload.interfaces().collect();
            tracing::info!(
                "relay.offload = \"auto\": the kernel relays bound UDP channels (on {})",
                on.join(", ")
            );
            Kernel {
                status: OffloadStatus {
                    active: true,
                    reason: None,
                },
                loaded: Some(Arc::new(Mutex::new(offload))),
            }
        }
        Err(reason) => {
            tracing::info!(
                "relay.offload = \"auto\": off: {reason}; every packet goes through user space"
            );
            off(reason)
        }
    }
}

/// Loads the program and attaches it where clients' and peers' packets arrive.
fn load(udp: &[SocketAddr], relay_ips: &[IpAddr]) -> Result<Offload, String> {
    let ips: Vec<IpAddr> = (udp.iter().map(|a| a.ip()))
        .chain(relay_ips.iter().copied())
        .collect();
    let interfaces = interfaces_of(&ips)?;
    let mut offload = Offload::load().map_err(|e| e.to_string())?;
    for interface in &interfaces {
        offload.attach(interface).map_err(|e| e.to_string())?;
    }
    if interfaces.iter().any(|i| i != "lo") && !forwarding(&ips) {
        tracing::warn!(
            "relay.offload: IP forwarding is off (net.ipv4.ip_forward / net.ipv6.conf.all.\
             forwarding), so the kernel cannot redirect between interfaces and hands those \
             packets to user space"
        );
    }
    if ips.iter().any(IpAddr::is_unspecified) {
        tracing::info!(
            "relay.offload: a UDP listen address is a wildcard, so the program is on every \
             interface that had an address of its family at start ({}); clients arriving on \
             an interface added later are relayed in user space",
            interfaces.join(", ")
        );
    }
    Ok(offload)
}

/// The interfaces holding `ips` (loopback addresses are on `lo`); for a wildcard (0.0.0.0
/// or ::), every interface holding an address of its family.
fn interfaces_of(ips: &[IpAddr]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot list the interfaces: {e}"))?
        .collect();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    for ip in ips {
        let holds = |a: &nix::ifaddrs::InterfaceAddress| {
            let Some(addr) = a.address.as_ref() else {
                return false;
            };
            match ip {
                IpAddr::V4(v4) => addr
                    .as_sockaddr_in()
                    .is_some_and(|s| v4.is_unspecified() || s.ip() == *v4),
                IpAddr::V6(v6) => addr
                    .as_sockaddr_in6()
                    .is_some_and(|s| v6.is_unspecified() || s.ip() == *v6),
            }
        };
        if ip.is_loopback() {
            add("lo".to_owned());
            continue;
        }
        let mut found = false;
        for a in addrs.iter().filter(|a| holds(a)) {
            add(a.interface_name.clone());
            found = true;
        }
        if !found {
            return Err(format!("no interface holds {ip}"));
        }
    }
    Ok(names)
}

/// Whether this host forwards every family among `ips` (what a redirect between interfaces
/// needs): IPv4, and IPv6 when an address is IPv6.
fn forwarding(ips: &[IpAddr]) -> bool {
    let on = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
    on("/proc/sys/net/ipv4/ip_forward")
        && (!ips.iter().any(IpAddr::is_ipv6) || on("/proc/sys/net/ipv6/conf/all/forwarding"))
}

impl Kernel {
    /// For `/metrics` and `/healthz`.
    pub(super) fn status(&self) -> &OffloadStatus {
        &self.status
    }

    /// Worker `worker`'s handle on the kernel's maps; `None` while the offload is off.
    pub(super) fn maps(&self, _worker: usize) -> Option<Box<dyn OffloadMaps>> {
        let loaded = self.loaded.as_ref()?;
        Some(Box::new(Shared(Arc::clone(loaded))))
    }
}

/// A worker's handle on the one loaded program's maps.
struct Shared(Arc<Mutex<Offload>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Offload> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OffloadMaps for Shared {
    fn insert(&mut self, entry: &ChannelEntry) -> std::io::Result<()> {
        self.lock().maps().insert(entry)
    }

    fn remove(&mut self, entry: &ChannelEntry) {
        self.lock().maps().remove(entry);
    }

    fn counts(&self, entry: &ChannelEntry) -> Option<OffloadCounts> {
        self.lock().maps().counts(entry)
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
