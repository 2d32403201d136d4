//! Where every room's recent events are in the rooms' stream, for catching a room up by
//! position (see [`Recent`]).

use std::collections::HashMap;

/// Events kept in one generation of [`Recent`]: two of them cover at least this many of the
/// stream's latest events. A generation takes 2 MiB when a few rooms have them all, and up to
/// about 35 MB when each is a different room's.
const RECENT_GENERATION: usize = 1 << 18;

/// The stream positions of every room's recent events, recorded by the stream-wide reader (it
/// reads them all anyway). A room a node starts to follow is caught up by reading exactly these
/// positions. Reading a room's events by subject instead costs NATS 2.9 a scan of every other
/// room's events in between: 10,000 sessions moving to a node that followed none of their rooms
/// took nats-server 17 s of CPU that way (docs/BENCHMARKS.md).
#[derive(Default)]
pub(super) struct Recent {
    /// Every event from this position up to `last` is in `older` or `newer`; 0 until the reader
    /// starts.
    from: u64,
    last: u64,
    older: HashMap<String, Vec<u64>>,
    newer: HashMap<String, Vec<u64>>,
    /// The first position `newer` may hold, and how many it holds.
    newer_from: u64,
    newer_len: usize,
}

impl Recent {
    /// Positions recorded from the reader's first, `from`: what comes before it is not known.
    pub(super) fn starting_at(from: u64) -> Recent {
        Recent {
            from,
            newer_from: from,
            last: from.saturating_sub(1),
            ..Recent::default()
        }
    }

    /// Records an event's position; gives back the generation let go, if one was, to be
    /// dropped off the lock (a quarter of a million allocations).
    #[must_use]
    pub(super) fn record(&mut self, subject: &str, pos: u64) -> Option<HashMap<String, Vec<u64>>> {
        if self.from == 0 {
            return None;
        }
        if pos <= self.last {
            // The stream was made again (its positions start over): nothing before is known.
            *self = Recent::starting_at(pos);
        }
        self.last = pos;
        let mut retired = None;
        if self.newer_len >= RECENT_GENERATION {
            retired = Some(std::mem::replace(
                &mut self.older,
                std::mem::take(&mut self.newer),
            ));
            self.from = self.newer_from;
            self.newer_from = pos;
            self.newer_len = 0;
        }
        match self.newer.get_mut(subject) {
            Some(positions) => positions.push(pos),
            None => {
                self.newer.insert(subject.to_owned(), vec![pos]);
            }
        }
        self.newer_len += 1;
        retired
    }

    /// The positions of `subject`'s events after `after` that the reader has seen, when it
    /// has seen every one of them; `None` when some came before what it remembers.
    pub(super) fn after(&self, subject: &str, after: u64) -> Option<Vec<u64>> {
        if self.from == 0 || after.saturating_add(1) < self.from {
            return None;
        }
        Some(
            [&self.older, &self.newer]
                .into_iter()
                .filter_map(|m| m.get(subject))
                .flatten()
                .copied()
                .filter(|p| *p > after)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_positions_are_known_from_where_the_reader_started() {
        assert_eq!(
            Recent::default().after("a", 0),
            None,
            "nothing is known before the reader starts"
        );
        let mut r = Recent::starting_at(10);
        for (subject, pos) in [("a", 10), ("b", 11), ("a", 12), ("c", 13), ("a", 15)] {
            let _ = r.record(subject, pos);
        }
        assert_eq!(r.after("a", 9), Some(vec![10, 12, 15]));
        assert_eq!(r.after("a", 12), Some(vec![15]));
        assert_eq!(r.after("b", 11), Some(vec![]), "nothing after its last");
        assert_eq!(r.after("d", 9), Some(vec![]), "a room without events since");
        assert_eq!(
            r.after("a", 5),
            None,
            "events before the reader started are unknown"
        );
    }

    #[test]
    fn old_generations_are_let_go() {
        let mut r = Recent::starting_at(1);
        let n = RECENT_GENERATION as u64;
        for pos in 1..=3 * n {
            let _ = r.record(if pos % 2 == 0 { "even" } else { "odd" }, pos);
        }
        // Two generations: the last 2n positions at least.
        assert_eq!(r.after("odd", n - 1), None, "the first generation is gone");
        assert!(r.after("odd", n).is_some(), "the second is kept");
        let known = r
            .after("odd", 2 * n)
            .expect("the last generations are kept");
        assert_eq!(known.len() as u64, n / 2);
        assert!(known.iter().all(|p| p % 2 == 1 && *p > 2 * n));
    }

    #[test]
    fn a_stream_made_again_starts_over() {
        let mut r = Recent::starting_at(100);
        let _ = r.record("a", 100);
        let _ = r.record("a", 101);
        let _ = r.record("a", 1);
        assert_eq!(r.after("a", 0), Some(vec![1]));
        assert_eq!(r.after("a", 100), Some(vec![]));
    }
}
