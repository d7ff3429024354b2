//! The kernel fast path (issue 18): a TC eBPF program that relays UDP ChannelData of bound
//! channels without the packets reaching user space, loaded and attached with aya.
//!
//! - `bpf/relay.bpf.c` is the program; its compiled object `bpf/relay.bpf.o` is committed
//!   and included here, so building rturn needs only Rust (`scripts/build-bpf.sh` rebuilds
//!   it; CI checks the committed object is what the source builds to).
//! - [`Offload`] (this file) loads the object, attaches the classifier to the ingress of the
//!   interfaces it is given and detaches it when dropped, also while a panic unwinds. On
//!   Linux >= 6.6 the attachment is a TCX link, which the kernel also removes when the process
//!   dies; on older kernels it is a `clsact` filter (the qdisc is added if missing, and
//!   removed again when this added it; drop the `Offload` in the network namespace it was
//!   attached in, as netlink works per namespace).
//! - [`KernelMaps`] (`maps.rs`) is the table user space writes: one entry per bound channel,
//!   with per-entry packet and byte counters. `entry.rs` holds the entry types and their bytes
//!   in the maps; `support.rs` the privilege check and the errors.
//!
//! `server/offload.rs` loads it and hands each worker the maps; the Manager decides what goes
//! in (`turn/offload_sync.rs`). IPv4 and IPv6; the program passes every packet it
//! does not own to user space unchanged. On `lo` it delivers to the local socket; on
//! Ethernet-framed interfaces it redirects to the egress the FIB names, which needs IP
//! forwarding enabled.

mod entry;
mod maps;
mod support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod veth_tests;

use aya::programs::links::LinkOrder;
use aya::programs::tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier};
use aya::util::KernelVersion;
use aya::{Ebpf, include_bytes_aligned};

pub use entry::{ChannelEntry, OffloadCounts};
pub use maps::KernelMaps;
pub use support::{OffloadError, check_privileges};

/// The compiled program (`scripts/build-bpf.sh`).
static OBJECT: &[u8] = include_bytes_aligned!("../../bpf/relay.bpf.o");
/// The classifier's name in the object (its C function).
const PROGRAM: &str = "rturn_relay";

/// How the classifier hooks into an interface's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    /// A TCX link (Linux >= 6.6): the kernel drops it when its descriptor closes.
    Tcx,
    /// A direct-action filter on a `clsact` qdisc (older kernels), removed by netlink in this
    /// network namespace.
    Clsact,
}

/// One interface the classifier is attached to.
#[derive(Debug)]
struct Attached {
    interface: String,
    link: SchedClassifierLinkId,
    /// The `clsact` qdisc was added by us (kernels before TCX) and is removed on drop.
    added_clsact: bool,
}

/// The loaded program, its maps and its attachments; dropping it detaches everything.
#[derive(Debug)]
pub struct Offload {
    ebpf: Ebpf,
    maps: KernelMaps,
    attached: Vec<Attached>,
}

impl Offload {
    /// Checks the privileges and loads the program and its maps into the kernel (nothing is
    /// attached yet). The error says in one line why the offload cannot run here.
    pub fn load() -> Result<Self, OffloadError> {
        check_privileges()?;
        let load = |e: &dyn std::error::Error| OffloadError::Load(support::one_line(e));
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| load(&e))?;
        program(&mut ebpf)?.load().map_err(|e| load(&e))?;
        let (Some(to_peer), Some(to_client)) =
            (ebpf.take_map("to_peer"), ebpf.take_map("to_client"))
        else {
            return Err(OffloadError::Load("the object lacks its maps".into()));
        };
        let maps = KernelMaps::new(to_peer, to_client).map_err(|e| load(&e))?;
        Ok(Offload {
            ebpf,
            maps,
            attached: Vec::new(),
        })
    }

    /// Attaches the classifier to the ingress of `interface` (where both the clients' and the
    /// peers' packets arrive on `lo`; elsewhere attach it to every interface clients or peers
    /// reach the server through). Only `lo` and Ethernet-framed interfaces (veth, NICs).
    /// Attaching twice to one interface is a no-op.
    pub fn attach(&mut self, interface: &str) -> Result<(), OffloadError> {
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        self.attach_as(interface, if tcx { Hook::Tcx } else { Hook::Clsact })
    }

    /// [`Offload::attach`] with the hook chosen (the tests try the one older kernels use).
    pub(crate) fn attach_as(&mut self, interface: &str, hook: Hook) -> Result<(), OffloadError> {
        if self.attached.iter().any(|a| a.interface == interface) {
            return Ok(());
        }
        let failed = |reason: String| OffloadError::Attach {
            interface: interface.to_owned(),
            reason,
        };
        // The program reads an Ethernet header first: lo and Ethernet-framed devices only.
        // (/sys shows the namespace it was mounted in: another namespace's devices are absent
        // there and taken on trust.)
        let kind = std::fs::read_to_string(format!("/sys/class/net/{interface}/type"));
        if kind.is_ok_and(|k| !matches!(k.trim(), "1" | "772")) {
            return Err(failed("not an Ethernet or loopback interface".into()));
        }
        let mut added_clsact = false;
        let options = match hook {
            Hook::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
            Hook::Clsact => {
                match tc::qdisc_add_clsact(interface) {
                    Ok(()) => added_clsact = true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(failed(support::one_line(&e))),
                }
                TcAttachOptions::Netlink(NlOptions::default())
            }
        };
        let attached = program(&mut self.ebpf)
            .map_err(|e| failed(e.to_string()))?
            .attach_with_options(interface, TcAttachType::Ingress, options);
        match attached {
            Ok(link) => {
                self.attached.push(Attached {
                    interface: interface.to_owned(),
                    link,
                    added_clsact,
                });
                Ok(())
            }
            Err(e) => {
                if added_clsact {
                    remove_clsact(interface);
                }
                Err(failed(support::one_line(&e)))
            }
        }
    }

    /// The interfaces the classifier is attached to.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|a| a.interface.as_str())
    }

    /// The kernel program's id (what `bpftool prog` and TCX queries list).
    pub fn program_id(&self) -> Option<u32> {
        let prog: &SchedClassifier = self.ebpf.program(PROGRAM)?.try_into().ok()?;
        prog.info().ok().map(|info| info.id())
    }

    /// The maps: insert, remove and count entries.
    pub fn maps(&mut self) -> &mut KernelMaps {
        &mut self.maps
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        for a in attached {
            if let Ok(prog) = program(&mut self.ebpf)
                && let Err(e) = prog.detach(a.link)
            {
                tracing::warn!("kernel offload: detaching from {}: {e}", a.interface);
            }
            if a.added_clsact {
                remove_clsact(&a.interface);
            }
        }
    }
}

/// The classifier in the loaded object.
fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, OffloadError> {
    let missing = || OffloadError::Load(format!("the object has no program {PROGRAM}"));
    let prog = ebpf.program_mut(PROGRAM).ok_or_else(missing)?;
    prog.try_into()
        .map_err(|e: ProgramError| OffloadError::Load(support::one_line(&e)))
}

/// Removes the `clsact` qdisc this process added to `interface` (kernels before TCX; aya has
/// no call for it, iproute2 does).
fn remove_clsact(interface: &str) {
    let status = std::process::Command::new("tc")
        .args(["qdisc", "del", "dev", interface, "clsact"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        tracing::warn!("kernel offload: could not remove the clsact qdisc it added to {interface}");
    }
}
