//! Relay bandwidth limits (`[relay] max-bps` per allocation and `bps-capacity` overall, in
//! bytes per second, each direction on its own as in coturn). Pure: time is passed in.
//!
//! A [`ByteBucket`] holds up to one second's worth of bytes and admits a packet while it is
//! not empty, then charges the packet's length, going into debt if need be: so a packet
//! larger than the bucket is never starved, and the long-run rate is exact. Each shard has
//! its own overall buckets with `bps-capacity / workers` (see `TurnConfig::bps_capacity`),
//! so the data path touches no state another core writes. The exception is an RFC 6062
//! allocation's buckets, which its connections on every worker share: a stream charges
//! what it read even from an empty bucket ([`ByteBucket::spend`]), so bursts may reach
//! about one second's worth per worker while the rate over time stays `max-bps`.

use std::time::Instant;

/// Bytes per second through one bucket, one second's worth at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteBucket {
    /// Bytes available; negative after a packet larger than what was left.
    level: f64,
    /// When `level` was last brought up to date; `None` for a bucket never used (full).
    at: Option<Instant>,
}

impl ByteBucket {
    /// Refills at `rate` bytes per second up to `rate`; whether a packet may pass now.
    fn ready(&mut self, now: Instant, rate: u64) -> bool {
        let full = rate as f64;
        self.level = match self.at {
            None => full,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                (self.level + elapsed * full).min(full)
            }
        };
        // Workers sharing a bucket read their clocks at slightly different moments: an
        // earlier `now` refills nothing and must not move the bucket's time back (the later
        // one would then refill the same interval twice).
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        self.level > 0.0
    }

    /// Bytes that may pass now at `rate` (refilled first; `usize::MAX` for no limit): what
    /// a stream, which cannot drop bytes, reads at most before it waits.
    pub fn room(&mut self, now: Instant, rate: u64) -> usize {
        match rate {
            0 => usize::MAX,
            rate if self.ready(now, rate) => self.level as usize,
            _ => 0,
        }
    }

    fn charge(&mut self, len: usize) {
        self.level -= len as f64;
    }

    /// Charges `len` bytes that have already passed at `rate` (0: no limit), into debt if
    /// need be: a stream cannot take back what it read, and a bucket shared by pairs on
    /// several workers may have been emptied by another pair since [`ByteBucket::room`]
    /// said there was room, so the charge never depends on what is left.
    pub fn spend(&mut self, now: Instant, rate: u64, len: usize) {
        if rate != 0 {
            self.ready(now, rate);
            self.charge(len);
        }
    }
}

/// The two directions of one allocation, or of one shard as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bandwidth {
    /// Client → peers.
    pub to_peer: ByteBucket,
    /// Peers → client.
    pub to_client: ByteBucket,
}

/// Why a packet may not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Its allocation used up `max-bps`.
    Allocation,
    /// The server used up `bps-capacity`.
    Capacity,
}

/// Admits `len` bytes through the allocation's bucket (`max_bps`) and the shard's
/// (`capacity`), charging both, or neither; a rate of 0 is no limit.
pub fn admit(
    allocation: &mut ByteBucket,
    shard: &mut ByteBucket,
    (max_bps, capacity): (u64, u64),
    now: Instant,
    len: usize,
) -> Result<(), Over> {
    if max_bps != 0 && !allocation.ready(now, max_bps) {
        return Err(Over::Allocation);
    }
    if capacity != 0 && !shard.ready(now, capacity) {
        return Err(Over::Capacity);
    }
    if max_bps != 0 {
        allocation.charge(len);
    }
    if capacity != 0 {
        shard.charge(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Packets of `len` bytes admitted out of `n` offered at `now`.
    fn passed(a: &mut ByteBucket, s: &mut ByteBucket, rates: (u64, u64), now: Instant) -> usize {
        (0..100)
            .filter(|_| admit(a, s, rates, now, 1000).is_ok())
            .count()
    }

    #[test]
    fn one_second_of_burst_then_the_rate() {
        let t0 = Instant::now();
        let (mut a, mut s) = (ByteBucket::default(), ByteBucket::default());
        // 10 000 B/s: ten 1000-byte packets at once, then one per 100 ms.
        assert_eq!(passed(&mut a, &mut s, (10_000, 0), t0), 10);
        let later = t0 + Duration::from_millis(300);
        assert_eq!(passed(&mut a, &mut s, (10_000, 0), later), 3);
        // Idle for a minute still refills only one second's worth.
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(passed(&mut a, &mut s, (10_000, 0), much_later), 10);
    }

    #[test]
    fn a_packet_larger_than_the_bucket_passes_and_leaves_a_debt() {
        let t0 = Instant::now();
        let (mut a, mut s) = (ByteBucket::default(), ByteBucket::default());
        assert_eq!(admit(&mut a, &mut s, (1000, 0), t0, 5000), Ok(()));
        let soon = t0 + Duration::from_secs(2);
        assert_eq!(
            admit(&mut a, &mut s, (1000, 0), soon, 10),
            Err(Over::Allocation)
        );
        let debt_paid = t0 + Duration::from_millis(4100);
        assert_eq!(admit(&mut a, &mut s, (1000, 0), debt_paid, 10), Ok(()));
    }

    #[test]
    fn room_says_what_a_stream_may_read_now() {
        let t0 = Instant::now();
        let mut b = ByteBucket::default();
        assert_eq!(b.room(t0, 0), usize::MAX, "no limit");
        assert_eq!(b.room(t0, 10_000), 10_000, "a full second's worth");
        let mut shard = ByteBucket::default();
        assert_eq!(admit(&mut b, &mut shard, (10_000, 0), t0, 10_000), Ok(()));
        assert_eq!(b.room(t0, 10_000), 0);
        assert_eq!(b.room(t0 + Duration::from_millis(250), 10_000), 2_500);
    }

    #[test]
    fn what_a_stream_read_is_charged_even_from_an_empty_bucket() {
        let t0 = Instant::now();
        let mut b = ByteBucket::default();
        // Two pairs on two workers both saw a full second's worth and both read it.
        let (first, second) = (b.room(t0, 10_000), b.room(t0, 10_000));
        b.spend(t0, 10_000, first);
        b.spend(t0, 10_000, second);
        // The second read is owed: a second of refill pays it, the next gives room again.
        assert_eq!(b.room(t0 + Duration::from_millis(900), 10_000), 0);
        assert_eq!(b.room(t0 + Duration::from_millis(1500), 10_000), 5_000);
        b.spend(t0 + Duration::from_millis(1500), 10_000, 5_000);
        // A worker whose clock read earlier refills nothing, and moves no time back: the
        // 100 ms between are not refilled twice.
        assert_eq!(b.room(t0 + Duration::from_millis(1400), 10_000), 0);
        assert_eq!(b.room(t0 + Duration::from_millis(1500), 10_000), 0);
        // No limit charges nothing.
        let mut free = ByteBucket::default();
        free.spend(t0, 0, 1 << 20);
        assert_eq!(free.room(t0, 1000), 1000);
    }

    #[test]
    fn capacity_is_shared_and_a_refusal_charges_nothing() {
        let t0 = Instant::now();
        let mut shard = ByteBucket::default();
        let (mut a, mut b) = (ByteBucket::default(), ByteBucket::default());
        // Capacity 5000 B/s, each allocation 4000 B/s.
        let rates = (4000, 5000);
        assert_eq!(passed(&mut a, &mut shard, rates, t0), 4);
        let over: Vec<_> = (0..3)
            .map(|_| admit(&mut b, &mut shard, rates, t0, 1000))
            .collect();
        assert_eq!(over, [Ok(()), Err(Over::Capacity), Err(Over::Capacity)]);
        // b was charged only for the packet that passed: 3000 bytes left in it.
        let mut roomy = ByteBucket::default();
        assert_eq!(passed(&mut b, &mut roomy, (4000, 0), t0), 3);
        // No limits: everything passes.
        assert_eq!(passed(&mut a, &mut shard, (0, 0), t0), 100);
    }
}
