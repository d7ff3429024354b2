//! Whether this process may run the kernel fast path, and its errors as one line each.
//!
//! Loading a TC program and its maps needs CAP_BPF (or CAP_SYS_ADMIN before Linux 5.8) and
//! attaching it needs CAP_NET_ADMIN; root has both. The capabilities are read from
//! `/proc/self/status` so that a missing one is named instead of surfacing as an `EPERM` from
//! the first syscall. Whether the kernel can run the program is answered by loading it
//! (`mod.rs`): the verifier is the only complete check.

use std::error::Error;
use std::fmt::Write as _;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN's bit: what loading BPF programs needed before CAP_BPF (Linux 5.8).
const CAP_SYS_ADMIN: u32 = 21;
/// CAP_BPF's bit.
const CAP_BPF: u32 = 39;

/// Why the kernel fast path is off, or could not be set up: one line for the log.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// The process lacks a capability the offload needs.
    #[error("kernel offload needs {0}")]
    Privileges(String),
    /// The kernel refused the program or its maps (no BPF, too old, verifier).
    #[error("kernel offload: the kernel did not load the program: {0}")]
    Load(String),
    /// The program could not be attached to an interface.
    #[error("kernel offload: could not attach to {interface}: {reason}")]
    Attach {
        /// The interface.
        interface: String,
        /// What the kernel said.
        reason: String,
    },
}

/// Checks the effective capabilities of this process; `Err` names what is missing.
pub fn check_privileges() -> Result<(), OffloadError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| {
        OffloadError::Privileges(format!(
            "CAP_BPF and CAP_NET_ADMIN, and /proc/self/status is unreadable ({e})"
        ))
    })?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    missing_capabilities(effective).map_or(Ok(()), |missing| {
        Err(OffloadError::Privileges(format!(
            "{missing} (run as root, or grant AmbientCapabilities=CAP_BPF CAP_NET_ADMIN)"
        )))
    })
}

/// What of CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN the effective set `caps` lacks.
fn missing_capabilities(caps: u64) -> Option<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    match (bpf, has(CAP_NET_ADMIN)) {
        (true, true) => None,
        (false, true) => Some("CAP_BPF"),
        (true, false) => Some("CAP_NET_ADMIN"),
        (false, false) => Some("CAP_BPF and CAP_NET_ADMIN"),
    }
}

/// An error and its sources on one line (a verifier log is many lines), at most ~300 bytes.
pub(crate) fn one_line(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let _ = write!(out, ": {e}");
        source = e.source();
    }
    let mut line: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_named() {
        let bit = |b: u32| 1u64 << b;
        assert_eq!(
            missing_capabilities(bit(CAP_BPF) | bit(CAP_NET_ADMIN)),
            None
        );
        assert_eq!(
            missing_capabilities(bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN)),
            None
        );
        assert_eq!(missing_capabilities(bit(CAP_BPF)), Some("CAP_NET_ADMIN"));
        assert_eq!(missing_capabilities(bit(CAP_NET_ADMIN)), Some("CAP_BPF"));
        assert_eq!(missing_capabilities(0), Some("CAP_BPF and CAP_NET_ADMIN"));
    }

    #[test]
    fn errors_fit_on_one_line() {
        let long = std::io::Error::other(format!("verifier\nsays {}", "x".repeat(400)));
        let line = one_line(&long);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("verifier says x"));
        assert!(line.len() <= 304);
    }
}
