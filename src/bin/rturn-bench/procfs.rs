//! What the generator reads from `/proc` (Linux): its open-files limit, CPU time spent, and
//! the resident memory of the server under test. Elsewhere these read as `None` and the
//! checks that depend on them pass.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

/// File descriptors the process needs besides one per socket (std streams, runtime, epoll).
const SPARE_FDS: u64 = 64;
/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// Open files wanted for `sockets` sockets.
pub(crate) fn wanted_fds(sockets: usize) -> u64 {
    sockets as u64 + SPARE_FDS
}

/// Fails early, naming `ulimit -n`, when the soft limit on open files is too low for
/// `sockets` sockets; `what` names the option that asked for them.
pub(crate) fn check_fd_limit(sockets: usize, what: &str) -> anyhow::Result<()> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok());
    let wanted = wanted_fds(sockets);
    match soft {
        Some(soft) if soft < wanted => bail!(
            "{what} needs about {wanted} open files but the limit is {soft}; raise it in the \
             shell that runs rturn-bench, e.g. `ulimit -n {wanted}`"
        ),
        _ => Ok(()),
    }
}

/// CPU time (user + system) of the calling thread so far, from
/// `/proc/thread-self/schedstat`: nanoseconds, brought up to date at every scheduler tick and
/// context switch.
pub(crate) fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// CPU time (user + system, all threads, living and exited) of this process so far, in
/// 10 ms ticks, from `/proc/self/stat`.
pub(crate) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Asks for a timer slack of `nanos` for the calling thread, so that its sleeps end on time
/// (the default slack lets a sleep run 50 µs late); best effort, without privileges.
pub(crate) fn set_timer_slack(nanos: u64) {
    // /proc/thread-self links to PID/task/TID; /proc/TID/ is that thread too.
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    if let Some(tid) = link.file_name().and_then(|tid| tid.to_str()) {
        let _ = std::fs::write(format!("/proc/{tid}/timerslack_ns"), nanos.to_string());
    }
}

/// How an IPv4 socket's local address reads in `/proc/net/udp`: the address as a
/// native-endian u32 and the port, in hex (`0100007F:0D96` for 127.0.0.1:3478 on x86).
pub(crate) fn udp_key(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    }
}

/// Datagrams the kernel dropped so far, summed over the UDP sockets whose local addresses
/// (as [`udp_key`] writes them) are in `keys`: a full receive queue, the reader too slow.
/// Reads the table of the calling thread's network namespace.
pub(crate) fn udp_drops(keys: &HashSet<String>) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/thread-self/net/udp").ok()?;
    let mut drops = 0;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let (Some(local), Some(dropped)) = (fields.get(1), fields.get(12))
            && keys.contains(*local)
        {
            drops += dropped.parse::<u64>().unwrap_or(0);
        }
    }
    Some(drops)
}

/// Resident memory (VmRSS) of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_figures() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        // The running thread's figure moves at scheduler ticks and switches: it may read 0.
        assert!(thread_cpu().is_some());
        assert!(process_cpu().is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(check_fd_limit(1, "--count").is_ok());
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let key = udp_key(sock.local_addr().expect("addr")).expect("IPv4");
        assert_eq!(udp_drops(&HashSet::from([key])), Some(0));
        std::thread::spawn(|| {
            set_timer_slack(1000);
            let link = std::fs::read_link("/proc/thread-self").expect("thread-self");
            let tid = link
                .file_name()
                .and_then(|t| t.to_str())
                .expect("tid")
                .to_owned();
            let slack = std::fs::read_to_string(format!("/proc/{tid}/timerslack_ns"));
            assert_eq!(slack.expect("slack").trim(), "1000");
        })
        .join()
        .expect("thread");
        assert!(check_fd_limit(usize::MAX / 2, "--count").is_err());
    }
}
