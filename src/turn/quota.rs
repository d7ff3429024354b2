//! Allocation quotas (`user-quota`, `total-quota`), shared by every shard. Touched only when
//! an allocation is created or deleted, never per packet.

use std::collections::HashMap;
use std::sync::Mutex;

/// Counts allocations per user and in total.
#[derive(Debug, Default)]
pub struct Quotas {
    /// Allocations one user may hold at once; 0 means no limit.
    user_limit: std::sync::atomic::AtomicUsize,
    /// Allocations the server holds at once; 0 means no limit.
    total_limit: std::sync::atomic::AtomicUsize,
    counts: Mutex<(usize, HashMap<String, usize>)>,
}

impl Quotas {
    /// Quotas with these limits (0 = unlimited).
    pub fn new(user_limit: usize, total_limit: usize) -> Self {
        Self {
            user_limit: user_limit.into(),
            total_limit: total_limit.into(),
            counts: Mutex::default(),
        }
    }

    /// New limits (config reload); allocations already held are kept.
    pub fn set_limits(&self, user_limit: usize, total_limit: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.user_limit.store(user_limit, Relaxed);
        self.total_limit.store(total_limit, Relaxed);
    }

    /// Takes one allocation for `user`, or says which error code refuses it:
    /// 486 (Allocation Quota Reached) for the user, 508 (Insufficient Capacity) overall.
    pub fn acquire(&self, user: &str) -> Result<(), u16> {
        let mut guard = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        let total_limit = self.total_limit.load(std::sync::atomic::Ordering::Relaxed);
        let user_limit = self.user_limit.load(std::sync::atomic::Ordering::Relaxed);
        if total_limit != 0 && *total >= total_limit {
            return Err(508);
        }
        let held = users.get(user).copied().unwrap_or(0);
        if user_limit != 0 && held >= user_limit {
            return Err(486);
        }
        *total += 1;
        users.insert(user.to_owned(), held + 1);
        Ok(())
    }

    /// Returns one allocation of `user`.
    pub fn release(&self, user: &str) {
        let mut guard = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    /// Allocations held right now.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_total_limits() {
        let q = Quotas::new(2, 3);
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Err(486));
        assert_eq!(q.acquire("b"), Ok(()));
        assert_eq!(q.acquire("c"), Err(508));
        q.release("a");
        assert_eq!(q.acquire("c"), Ok(()));
        assert_eq!(q.total(), 3);
        let unlimited = Quotas::new(0, 0);
        for _ in 0..100 {
            unlimited.acquire("x").unwrap();
        }
    }
}
