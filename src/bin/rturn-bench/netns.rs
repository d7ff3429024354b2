//! Network namespaces, for the relay workloads in the benchmark's veth topology
//! (`scripts/bench.sh --only veth`): the generator runs in the client namespace and binds its
//! echo peer in the peer namespace, so the server relays between two interfaces.
//!
//! A socket stays in the namespace it was created in: [`in_netns`] creates it on a short-lived
//! thread that has entered the namespace (`setns` changes only the calling thread's), and the
//! rest of the generator uses it from wherever it runs.

use std::fs::File;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

/// A network namespace, by its name under `/run/netns` (as `ip netns add` makes it).
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Opens `/run/netns/NAME`.
    pub(crate) fn open(name: &str) -> anyhow::Result<Netns> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("--peer-netns takes a namespace name as `ip netns` lists it, not {name:?}");
        }
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(Netns {
            name: name.to_owned(),
            file,
        })
    }

    /// Runs `f` on a thread inside this namespace and returns what it returns.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {}", self.name))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| bail!("the thread in network namespace {} panicked", self.name))
        })
    }
}

/// Whether this process runs in a network namespace of its own, not in the one of PID 1 (the
/// host's, or the container's; where PID 1 may not be inspected, kthreadd's, which is always
/// the host's): then a non-loopback target is an address of a topology made for the
/// benchmark, not of a real network.
pub(crate) fn separate() -> bool {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let kthreadd = || {
        let comm = std::fs::read_to_string("/proc/2/comm").ok()?;
        if comm.trim() == "kthreadd" {
            ns("2")
        } else {
            None
        }
    };
    match (ns("self"), ns("1").or_else(kthreadd)) {
        (Some(own), Some(init)) => own != init,
        _ => false,
    }
}

/// Refuses a target that is neither on the loopback interface nor, when the generator runs in
/// a namespace of its own ([`separate`]), inside it: this tool floods what it hits.
pub(crate) fn check_target(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.ip().to_canonical().is_loopback() || separate() {
        return Ok(addr);
    }
    bail!(
        "refusing non-loopback target {addr}: rturn-bench only sends to 127.0.0.0/8 or ::1, or \
         anywhere from inside a network namespace of its own (`ip netns exec`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_names() {
        let loopback: SocketAddr = "127.0.0.1:3478".parse().expect("address");
        assert!(check_target(loopback).is_ok());
        let private: SocketAddr = "10.183.1.1:3478".parse().expect("address");
        // Run from a namespace of its own (`ip netns exec`), any target is the topology's.
        assert_eq!(check_target(private).is_ok(), separate());
        for bad in ["", "../etc", "a/b", ".hidden"] {
            assert!(Netns::open(bad).is_err(), "{bad:?} is not a namespace name");
        }
        assert!(Netns::open("rturn-bench-no-such-namespace").is_err());
    }
}
