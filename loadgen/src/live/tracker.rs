//! Per-connection sequence accounting: gaps, duplicates and out-of-order arrivals.
//!
//! Memory is fixed (a 1024-bit window), whatever the stream length. A sequence number below
//! the next expected one is a duplicate if it was seen (inside the window), otherwise it fills
//! an earlier gap and counts as out-of-order. Numbers too old for the window count as
//! out-of-order.

/// Window of recent sequence numbers remembered, in bits.
const WINDOW: u64 = 1024;

/// Tracks one stream's sequence numbers (expected to start at `first`).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct SeqTracker {
    /// Next sequence number expected in order.
    next: u64,
    /// Numbers received (duplicates included).
    pub received: u64,
    /// Outstanding gaps (missing numbers below `next`).
    pub gaps: u64,
    /// Numbers received twice.
    pub duplicates: u64,
    /// Numbers received after a higher one.
    pub out_of_order: u64,
    /// A ring of the last [`WINDOW`] numbers: bit `n % WINDOW` set means `n` was received,
    /// for `n` in `next - WINDOW .. next`. Numbers entering the window take the slots of
    /// those leaving it, so an in-order number costs one bit, not a shift of the window.
    /// Last in the `repr(C)` layout: an in-order number touches the counters and one word.
    seen: [u64; (WINDOW / 64) as usize],
}

impl SeqTracker {
    /// A tracker expecting `first` next.
    #[must_use]
    pub fn new(first: u64) -> Self {
        Self {
            next: first,
            seen: [0; (WINDOW / 64) as usize],
            gaps: 0,
            duplicates: 0,
            out_of_order: 0,
            received: 0,
        }
    }

    /// The next number expected in order (one past the highest received).
    #[must_use]
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    /// Word index and bit mask of number `n`'s slot.
    fn slot(n: u64) -> (usize, u64) {
        let at = n % WINDOW;
        (usize::try_from(at / 64).unwrap_or(0), 1 << (at % 64))
    }

    /// Records one received sequence number.
    pub fn observe(&mut self, seq: u64) {
        self.received += 1;
        if seq >= self.next {
            let skipped = seq - self.next;
            self.gaps += skipped;
            // The skipped numbers enter the window unseen: clear the slots they take over.
            if skipped >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for n in self.next..seq {
                    let (word, mask) = Self::slot(n);
                    self.seen[word] &= !mask;
                }
            }
            let (word, mask) = Self::slot(seq);
            self.seen[word] |= mask;
            self.next = seq + 1;
            return;
        }
        if self.next - seq > WINDOW {
            self.out_of_order += 1;
            return;
        }
        let (word, mask) = Self::slot(seq);
        if self.seen[word] & mask != 0 {
            self.duplicates += 1;
        } else {
            self.out_of_order += 1;
            self.seen[word] |= mask;
            self.gaps = self.gaps.saturating_sub(1);
        }
    }

    /// Closes the stream expecting numbers up to `last` inclusive: missing tail numbers
    /// become gaps.
    pub fn finish(&mut self, last: u64) {
        if last >= self.next {
            self.gaps += last - self.next + 1;
            self.next = last + 1;
        }
    }
}

/// Sequence accounting of a stream that interleaves `n` sources, as a publisher split over
/// `n` shards does (source `i` sends `i+1`, `i+1+n`, `i+1+2n`, ...): one [`SeqTracker`] per
/// source, so that the sources' interleaving is neither disorder nor gaps. With one source
/// (the usual case) it is one inline tracker and allocates nothing.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Sequences {
    /// Source 0 (the only one of most streams).
    first: SeqTracker,
    /// Sources `1..n`, created when the stream is known to interleave.
    rest: Vec<SeqTracker>,
}

impl Default for Sequences {
    fn default() -> Self {
        Self {
            first: SeqTracker::new(1),
            rest: Vec::new(),
        }
    }
}

impl Sequences {
    /// Reads what an in-order number reads (counters, both lines of the window), so that a
    /// caller can start a stream's cache misses together (see `wire::sse::Parser::touch`).
    pub fn touch(&self) {
        let t = &self.first;
        std::hint::black_box((t.next, t.seen[0], t.seen[t.seen.len() - 1]));
    }

    /// Records `seq` of a stream interleaving `sources` sources (1: not interleaved).
    pub fn observe(&mut self, seq: u64, sources: u64) {
        if sources <= 1 {
            self.first.observe(seq);
            return;
        }
        let (source, nth) = (
            seq.saturating_sub(1) % sources,
            seq.saturating_sub(1) / sources + 1,
        );
        if source == 0 {
            self.first.observe(nth);
            return;
        }
        let at = usize::try_from(source - 1).unwrap_or(usize::MAX);
        if self.rest.len() <= at {
            self.rest.resize(at + 1, SeqTracker::new(1));
        }
        self.rest[at].observe(nth);
    }

    /// Closes a single-source stream expecting numbers up to `last` (see [`SeqTracker::finish`]).
    pub fn finish(&mut self, last: u64) {
        self.first.finish(last);
    }

    /// The next number expected in order from the (first) source.
    #[must_use]
    pub fn next_expected(&self) -> u64 {
        self.first.next_expected()
    }

    /// `(gaps, duplicates, out_of_order)` over every source.
    #[must_use]
    pub fn totals(&self) -> (u64, u64, u64) {
        std::iter::once(&self.first)
            .chain(&self.rest)
            .fold((0, 0, 0), |(g, d, o), t| {
                (g + t.gaps, d + t.duplicates, o + t.out_of_order)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new(1);
        for s in seqs {
            t.observe(*s);
        }
        t
    }

    #[test]
    fn interleaved_sources_are_tracked_apart_and_their_gaps_still_count() {
        // Three sources: 1,4,7 / 2,5,8 / 3,6,9; arriving source by source is not disorder.
        let mut s = Sequences::default();
        for seq in [1, 4, 7, 2, 5, 8, 3, 6, 9] {
            s.observe(seq, 3);
        }
        assert_eq!(s.totals(), (0, 0, 0));
        // Source 1 loses 5 (its second), source 2 repeats 3.
        let mut s = Sequences::default();
        for seq in [1, 2, 3, 4, 8, 6, 3, 7, 9] {
            s.observe(seq, 3);
        }
        assert_eq!(s.totals(), (1, 1, 0));
        // One source: exactly a SeqTracker.
        let mut s = Sequences::default();
        for seq in [1, 3, 2] {
            s.observe(seq, 1);
        }
        assert_eq!(s.totals(), (0, 0, 1));
        s.finish(5);
        assert_eq!(s.totals(), (2, 0, 1));
    }

    #[test]
    fn in_order_has_no_errors() {
        let t = run(&[1, 2, 3, 4]);
        assert_eq!(
            (t.gaps, t.duplicates, t.out_of_order, t.received),
            (0, 0, 0, 4)
        );
    }

    #[test]
    fn holes_are_gaps_and_repeats_are_duplicates() {
        let t = run(&[1, 2, 5, 5, 6, 2]);
        assert_eq!((t.gaps, t.duplicates, t.out_of_order), (2, 2, 0));
    }

    #[test]
    fn a_late_number_fills_its_gap_as_out_of_order() {
        let t = run(&[1, 3, 2, 4]);
        assert_eq!((t.gaps, t.duplicates, t.out_of_order), (0, 0, 1));
        let t = run(&[1, 3, 2, 2]);
        assert_eq!((t.gaps, t.duplicates, t.out_of_order), (0, 1, 1));
    }

    #[test]
    fn window_survives_long_jumps_and_word_boundaries() {
        let mut seqs: Vec<u64> = (1..=200).collect();
        seqs.push(130);
        seqs.push(2000);
        seqs.push(1999);
        seqs.push(5);
        let t = run(&seqs);
        assert_eq!(t.duplicates, 1, "130 seen 70 ago");
        assert_eq!(
            t.out_of_order, 2,
            "1999 fills a gap; 5 is out of the window"
        );
        assert_eq!(t.gaps, 2000 - 201 - 1);
    }

    #[test]
    fn missing_tail_counts_at_finish() {
        let mut t = run(&[1, 2, 3]);
        t.finish(10);
        assert_eq!(t.gaps, 7);
        t.finish(10);
        assert_eq!(t.gaps, 7, "idempotent");
    }

    /// The window as it was kept before (shifted by one bit per number): the ring must count
    /// exactly as it did on any sequence.
    /// Tracks one stream's sequence numbers (expected to start at `first`).
    #[derive(Debug, Clone)]
    struct ShiftingTracker {
        /// Next sequence number expected in order.
        next: u64,
        /// Bit `i` set: `next - 1 - i` was received.
        seen: [u64; (WINDOW / 64) as usize],
        /// Outstanding gaps (missing numbers below `next`).
        gaps: u64,
        /// Numbers received twice.
        duplicates: u64,
        /// Numbers received after a higher one.
        out_of_order: u64,
        /// Numbers received (duplicates included).
        received: u64,
    }

    impl ShiftingTracker {
        /// A tracker expecting `first` next.
        #[must_use]
        fn new(first: u64) -> Self {
            Self {
                next: first,
                seen: [0; (WINDOW / 64) as usize],
                gaps: 0,
                duplicates: 0,
                out_of_order: 0,
                received: 0,
            }
        }

        /// Word index and bit of `age` (< WINDOW).
        fn slot(age: u64) -> (usize, u64) {
            (usize::try_from(age / 64).unwrap_or(usize::MAX), age % 64)
        }

        fn bit(&self, age: u64) -> bool {
            let (word, bit) = Self::slot(age);
            self.seen[word] >> bit & 1 == 1
        }

        fn set_bit(&mut self, age: u64) {
            let (word, bit) = Self::slot(age);
            self.seen[word] |= 1 << bit;
        }

        /// Shifts the window so that `next` grows by `by`.
        fn advance(&mut self, by: u64) {
            if by >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
                return;
            }
            let words = self.seen.len();
            let (word_shift, bit_shift) = Self::slot(by);
            for i in (0..words).rev() {
                let src = i.checked_sub(word_shift);
                let mut v = src.map_or(0, |s| self.seen[s] << bit_shift);
                if bit_shift > 0
                    && let Some(lower) = src.and_then(|s| s.checked_sub(1))
                {
                    v |= self.seen[lower] >> (64 - bit_shift);
                }
                self.seen[i] = v;
            }
        }

        /// Records one received sequence number.
        fn observe(&mut self, seq: u64) {
            self.received += 1;
            if seq >= self.next {
                let skipped = seq - self.next;
                self.gaps += skipped;
                self.advance(skipped + 1);
                self.set_bit(0);
                self.next = seq + 1;
                return;
            }
            let age = self.next - 1 - seq;
            if age < WINDOW && self.bit(age) {
                self.duplicates += 1;
            } else {
                self.out_of_order += 1;
                if age < WINDOW {
                    self.set_bit(age);
                    self.gaps = self.gaps.saturating_sub(1);
                }
            }
        }
    }

    #[test]
    fn the_ring_counts_exactly_as_the_shifting_window_did() {
        // A small deterministic generator: runs in order, repeats, jumps (some beyond the
        // window), late numbers (some older than the window).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            let (mut ring, mut shifting) = (SeqTracker::new(1), ShiftingTracker::new(1));
            let mut next = 1u64;
            for _ in 0..rand(3_000) {
                let seq = match rand(12) {
                    0 => next + rand(64),
                    1 => next + rand(2 * WINDOW + 10),
                    2 => next.saturating_sub(rand(64)).max(1),
                    3 => next.saturating_sub(rand(2 * WINDOW + 10)).max(1),
                    4 => next.saturating_sub(1).max(1),
                    _ => next,
                };
                next = next.max(seq + 1);
                ring.observe(seq);
                shifting.observe(seq);
                assert_eq!(
                    (
                        ring.next,
                        ring.gaps,
                        ring.duplicates,
                        ring.out_of_order,
                        ring.received
                    ),
                    (
                        shifting.next,
                        shifting.gaps,
                        shifting.duplicates,
                        shifting.out_of_order,
                        shifting.received
                    ),
                    "after {seq}"
                );
            }
        }
    }
}
