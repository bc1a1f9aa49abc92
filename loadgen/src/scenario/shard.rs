//! Sharded runs: one scenario split over N loadgen processes (`--shard I/N`), each running
//! its share; `loadgen merge` joins their run directories afterwards.
//!
//! The split is deterministic and the same on every machine:
//! - every group's `count` splits into N shares whose sizes differ by at most one, the
//!   remainder going to the lowest shards;
//! - a shard's connections keep the indices they have in the whole run, so `{conn}` and
//!   `{group_conn}` stay unique over all shards;
//! - an `arrival_rate` splits in proportion to the share, so every shard's connect phase lasts
//!   as long as the whole run's (a `ramp` keeps its duration);
//! - publishers run on shard 0 only, unless a publisher says `split = true`: then every shard
//!   publishes `rate / N`, and sequence numbers interleave (shard `i` sends `i+1`, `i+1+N`,
//!   `i+1+2N`, ...), so subscribers can still check every source's sequence.

use std::fmt;
use std::str::FromStr;

use super::{Arrival, Expect, Scenario};

/// Which share of a run this process runs: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in the run, at least 1.
    pub count: u32,
}

/// A shard specification or split that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N`.
    #[error("shard `{0}` is not I/N (e.g. 0/3: the first of three shards)")]
    Format(String),
    /// `N` is zero.
    #[error("a run cannot have 0 shards")]
    ZeroShards,
    /// `I >= N`.
    #[error("shard index {index} is out of range for {count} shards (use 0..{count})")]
    IndexOutOfRange {
        /// The index given.
        index: u32,
        /// The shard count.
        count: u32,
    },
    /// More shards than connections: some shard would run nothing.
    #[error(
        "{count} shards for a run of {connections} connections: every shard needs at least one"
    )]
    TooManyShards {
        /// The shard count.
        count: u32,
        /// Connections in the whole run.
        connections: u64,
    },
    /// `--shards N` without a job completion index.
    #[error(
        "--shards needs the shard index from JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job) or --shard I/N"
    )]
    NoJobIndex,
}

impl RunShard {
    /// The whole run in one process.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Checks `index < count` and `count >= 1`.
    ///
    /// # Errors
    /// [`ShardError::ZeroShards`] or [`ShardError::IndexOutOfRange`].
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroShards);
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// Shard from a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` and `--shards N`.
    ///
    /// # Errors
    /// [`ShardError::NoJobIndex`] when `index` is `None`, [`ShardError::Format`] when it is
    /// not a number, or what [`RunShard::new`] refuses.
    pub fn from_job_index(index: Option<&str>, count: u32) -> Result<Self, ShardError> {
        let text = index.ok_or(ShardError::NoJobIndex)?;
        let index = text
            .trim()
            .parse()
            .map_err(|_| ShardError::Format(format!("{text}/{count}")))?;
        Self::new(index, count)
    }

    /// The share of `total` items this shard takes: `(first, len)`; lengths differ by at
    /// most one between shards, the remainder going to the lowest shards.
    #[must_use]
    pub fn share(self, total: u32) -> (u32, u32) {
        let (base, rem) = (total / self.count, total % self.count);
        let len = base + u32::from(self.index < rem);
        (self.index * base + self.index.min(rem), len)
    }
}

impl FromStr for RunShard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError::Format(text.to_owned());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse().map_err(|_| bad())?;
        let count = n.trim().parse().map_err(|_| bad())?;
        Self::new(index, count)
    }
}

impl fmt::Display for RunShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Where one group's share sits in the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupShare {
    /// `{conn}` of this share's first connection (index over the whole run).
    pub conn_base: u64,
    /// `{group_conn}` of this share's first connection.
    pub group_conn_base: u32,
    /// The group's `count` over all shards.
    pub whole_count: u32,
}

/// A shard's view of the whole run (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Sharding {
    /// This shard.
    pub shard: RunShard,
    /// Per client group, in scenario order.
    pub groups: Vec<GroupShare>,
    /// Per publisher, in scenario order: whether it publishes in this shard.
    pub publishes_here: Vec<bool>,
    /// The whole run's plan key (the same on every shard; `run.json` records it).
    pub whole_plan_key: serde_json::Value,
    /// Connections over all shards.
    pub whole_connections: u64,
    /// The whole run's plan ([`Scenario::plan`] before the split).
    pub whole_plan: String,
}

impl Sharding {
    /// Whether the loss of a group with `expect` cannot be known in one shard: its messages
    /// come from other shards too (every sharded `peers` group; a `publisher:` group whose
    /// publisher runs elsewhere or is split). `loadgen merge` reconciles those.
    #[must_use]
    pub fn defers(&self, expect: &Expect, publisher: Option<usize>, scenario: &Scenario) -> bool {
        if self.shard.count == 1 {
            return false;
        }
        match expect {
            Expect::Peers => true,
            Expect::Publisher(_) => publisher.is_some_and(|p| {
                scenario.publishers[p].split
                    || !self.publishes_here.get(p).copied().unwrap_or(false)
            }),
            _ => false,
        }
    }
}

impl Scenario {
    /// This scenario's share for `shard` (the whole scenario for `0/1`, with sharding facts
    /// recorded either way).
    ///
    /// # Errors
    /// [`ShardError::TooManyShards`] when some shard would get no connection at all.
    pub fn shard(&self, shard: RunShard) -> Result<Self, ShardError> {
        let whole_connections = self.total_connections();
        if u64::from(shard.count) > whole_connections {
            return Err(ShardError::TooManyShards {
                count: shard.count,
                connections: whole_connections,
            });
        }
        let mut out = self.clone();
        let mut groups = Vec::with_capacity(self.clients.len());
        let mut before = 0u64;
        for group in &mut out.clients {
            let whole = group.count;
            let (first, len) = shard.share(whole);
            groups.push(GroupShare {
                conn_base: before + u64::from(first),
                group_conn_base: first,
                whole_count: whole,
            });
            before += u64::from(whole);
            group.count = len;
            if let Arrival::Rate(rate) = group.arrival
                && len > 0
            {
                group.arrival = Arrival::Rate(rate * f64::from(len) / f64::from(whole));
            }
        }
        let mut publishes_here = Vec::with_capacity(self.publishers.len());
        for p in &mut out.publishers {
            publishes_here.push(p.split || shard.index == 0);
            if p.split {
                p.rate /= f64::from(shard.count);
            }
        }
        out.sharding = Some(Sharding {
            shard,
            groups,
            publishes_here,
            whole_plan_key: self.plan_key(),
            whole_connections,
            whole_plan: self.plan(),
        });
        Ok(out)
    }

    /// Whether some group or publisher would load the bundled server (no run `target`, and
    /// it names none of its own): shards of one run must share their target.
    #[must_use]
    pub fn uses_bundled_server(&self) -> bool {
        self.target.is_none()
            && (self.clients.iter().any(|g| g.targets.is_empty())
                || self.publishers.iter().any(|p| p.target.is_none()))
    }

    /// This shard (`0/1` for an unsharded run).
    #[must_use]
    pub fn run_shard(&self) -> RunShard {
        self.sharding.as_ref().map_or(RunShard::WHOLE, |s| s.shard)
    }

    /// The plan key of the whole run: equal on every shard of it and on the unsharded run.
    #[must_use]
    pub fn whole_plan_key(&self) -> serde_json::Value {
        self.sharding
            .as_ref()
            .map_or_else(|| self.plan_key(), |s| s.whole_plan_key.clone())
    }

    /// Whether publisher `index` publishes in this process.
    #[must_use]
    pub fn publishes_here(&self, index: usize) -> bool {
        self.sharding
            .as_ref()
            .is_none_or(|s| s.publishes_here.get(index).copied().unwrap_or(false))
    }

    /// `(conn, group_conn)` of this process's connection `i` of group `group`.
    #[must_use]
    pub fn connection_index(&self, group: usize, i: u32) -> (u64, u32) {
        match &self.sharding {
            Some(s) => {
                let share = s.groups[group];
                (share.conn_base + u64::from(i), share.group_conn_base + i)
            }
            None => {
                let before: u64 = self.clients[..group]
                    .iter()
                    .map(|g| u64::from(g.count))
                    .sum();
                (before + u64::from(i), i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_bad_ones_say_why() {
        assert_eq!("2/3".parse(), Ok(RunShard { index: 2, count: 3 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(RunShard::WHOLE));
        assert_eq!(
            "3/3".parse::<RunShard>(),
            Err(ShardError::IndexOutOfRange { index: 3, count: 3 })
        );
        assert_eq!("0/0".parse::<RunShard>(), Err(ShardError::ZeroShards));
        for bad in ["", "1", "a/3", "1/b", "-1/3", "1/3/4"] {
            let err = bad.parse::<RunShard>().expect_err(bad);
            assert_eq!(err, ShardError::Format(bad.to_owned()), "{bad}");
            assert!(err.to_string().contains("I/N"));
        }
        assert_eq!(
            RunShard::from_job_index(Some("1"), 4),
            Ok(RunShard { index: 1, count: 4 })
        );
        assert_eq!(
            RunShard::from_job_index(None, 4),
            Err(ShardError::NoJobIndex)
        );
        assert_eq!(
            RunShard::from_job_index(Some("4"), 4),
            Err(ShardError::IndexOutOfRange { index: 4, count: 4 })
        );
    }

    #[test]
    fn shares_cover_every_item_once_remainder_to_the_lowest_shards() {
        for total in [0u32, 1, 2, 7, 10, 1001] {
            for count in 1..=7u32 {
                let mut next = 0;
                let mut lens = Vec::new();
                for index in 0..count {
                    let (first, len) = RunShard { index, count }.share(total);
                    assert_eq!(first, next, "total {total} count {count} shard {index}");
                    next += len;
                    lens.push(len);
                }
                assert_eq!(next, total);
                assert!(
                    lens.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1),
                    "{lens:?}"
                );
            }
        }
    }

    #[test]
    fn a_scenario_splits_counts_rates_indices_and_publishers() {
        let text = r#"
            [run]
            duration = "1s"
            [[publishers]]
            name = "news"
            protocol = "http"
            path = "/sse/notifications"
            rate = 30
            [[publishers]]
            name = "ticks"
            protocol = "http"
            path = "/sse/notifications"
            rate = 9
            split = true
            [[clients]]
            name = "a"
            protocol = "sse"
            path = "/sse/notifications"
            count = 10
            arrival_rate = 100
            expect = "publisher:news"
            [[clients]]
            name = "b"
            protocol = "sse"
            path = "/sse/notifications"
            count = 2
            ramp = "1s"
            expect = "publisher:ticks"
        "#;
        let whole = crate::scenario::parse(text, std::path::Path::new("s.toml")).expect("valid");
        assert_eq!(whole.run_shard(), RunShard::WHOLE);
        let shards: Vec<Scenario> = (0..3)
            .map(|index| whole.shard(RunShard { index, count: 3 }).expect("splits"))
            .collect();
        let counts: Vec<(u32, u32)> = shards
            .iter()
            .map(|s| (s.clients[0].count, s.clients[1].count))
            .collect();
        assert_eq!(counts, [(4, 1), (3, 1), (3, 0)]);
        // Rates follow the share, so every shard connects for as long as the whole run.
        assert_eq!(shards[0].clients[0].arrival, Arrival::Rate(40.0));
        assert_eq!(shards[1].clients[0].arrival, Arrival::Rate(30.0));
        assert_eq!(shards[0].clients[1].arrival, whole.clients[1].arrival);
        // {conn} and {group_conn} as in the whole run: group a is 0..10, group b 10..12.
        assert_eq!(shards[1].connection_index(0, 0), (4, 4));
        assert_eq!(shards[2].connection_index(0, 2), (9, 9));
        assert_eq!(shards[1].connection_index(1, 0), (11, 1));
        assert_eq!(whole.connection_index(1, 1), (11, 1));
        // news on shard 0 only; ticks split: a third of the rate each.
        assert!(shards[0].publishes_here(0) && !shards[1].publishes_here(0));
        assert!(
            shards
                .iter()
                .all(|s| s.publishes_here(1) && (s.publishers[1].rate - 3.0).abs() < 1e-9)
        );
        // One plan for all: each shard's key is the whole run's.
        assert!(
            shards
                .iter()
                .all(|s| s.whole_plan_key() == whole.plan_key())
        );
        assert_ne!(shards[0].plan_key(), whole.plan_key());
        // What each shard must leave to the merge.
        let sharding = shards[1].sharding.as_ref().expect("sharded");
        assert!(sharding.defers(&shards[1].clients[0].expect, Some(0), &shards[1]));
        let first = shards[0].sharding.as_ref().expect("sharded");
        assert!(!first.defers(&shards[0].clients[0].expect, Some(0), &shards[0]));
        assert!(first.defers(&shards[0].clients[1].expect, Some(1), &shards[0]));
        assert_eq!(
            whole.shard(RunShard {
                index: 0,
                count: 13
            }),
            Err(ShardError::TooManyShards {
                count: 13,
                connections: 12
            })
        );
    }
}
