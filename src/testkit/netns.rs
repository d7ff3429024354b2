//! Network namespaces for the tests that build a topology of their own (the kernel fast
//! path between veth pairs): running code inside one.

use std::fs::File;

use nix::sched::{CloneFlags, setns};

/// Runs `f` on a thread inside the named network namespace (`ip netns add NAME`); sockets
/// made there stay there.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("open the namespace");
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        f()
    })
    .join()
    .expect("namespace thread")
}
