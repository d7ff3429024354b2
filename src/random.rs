//! Secrets and unpredictable choices, straight from the OS CSPRNG (`getrandom`): nonce keys,
//! relay ports, reservation tokens, allocation and peer IDs. None of these is on the
//! per-packet path, so the system call per value costs nothing that shows, and no user-space
//! generator state exists to leak or to be shared after a fork (coturn CVE-2020-6061's class:
//! predictable values from a weak generator).

use rand::distr::uniform::{SampleRange, SampleUniform};
use rand::distr::{Distribution, StandardUniform};
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};

/// A value of `T` from the OS CSPRNG.
pub fn os_random<T>() -> T
where
    StandardUniform: Distribution<T>,
{
    // getrandom fails only before the kernel's pool is seeded at boot, when it blocks instead.
    OsRng.unwrap_err().random()
}

/// A value in `range` from the OS CSPRNG, without modulo bias.
pub fn os_random_range<T, R>(range: R) -> T
where
    T: SampleUniform,
    R: SampleRange<T>,
{
    OsRng.unwrap_err().random_range(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_and_ranges_hold() {
        let a: [u8; 32] = os_random();
        let b: [u8; 32] = os_random();
        assert_ne!(a, b, "two 256-bit draws collided");
        let mut seen = [false; 8];
        for _ in 0..1000 {
            let v = os_random_range(0..8usize);
            seen[v] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "1000 draws missed a value of 0..8: {seen:?}"
        );
    }
}
