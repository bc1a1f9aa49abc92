//! What one shard of a sharded run records in `run.json` (`"shard"`), so that `loadgen merge`
//! can check that shards belong together and reconcile the loss no single shard can know.

use serde::{Deserialize, Serialize};

/// A shard's facts: who it was, when it started, and the counts merging needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in the run.
    pub count: u32,
    /// The machine's host name.
    pub host: Option<String>,
    /// The kernel clock source the wall clock came from (`tsc`, `kvm-clock`, ...).
    pub clock_source: Option<String>,
    /// `--start-at`, Unix µs; `None` when the shard started as soon as it could.
    pub start_at_unix_us: Option<u64>,
    /// When the connect phase actually started minus `--start-at`, µs.
    pub start_offset_us: Option<i64>,
    /// The target's clock minus this machine's, measured before the start (`None`: the
    /// target does not tell its time; only the bundled server does).
    pub clock_offset: Option<crate::live::target::ClockOffset>,
    /// The whole run's plan (what every shard together runs).
    pub whole_plan: String,
    /// Per client group, in scenario order.
    pub groups: Vec<GroupRecord>,
    /// Per publisher, in scenario order.
    pub publishers: Vec<PublisherRecord>,
}

/// One client group's share and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Group name.
    pub name: String,
    /// The group's `count` over all shards.
    pub whole_count: u32,
    /// `{conn}` of this shard's first connection of the group.
    pub conn_base: u64,
    /// Connections of the group in this shard.
    pub connections: u32,
    /// Connections whose accounting was final when the shard ended.
    pub settled: u64,
    /// Messages the group's connections sent in this shard.
    pub sent: u64,
    /// Why this shard could not count the group's expected messages (merge does).
    pub deferred: Option<Deferred>,
}

/// Expected messages a shard leaves to `loadgen merge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Deferred {
    /// Every message of publisher `publisher` (an index), published by other shards too.
    Publisher {
        /// Index of the publisher.
        publisher: usize,
    },
    /// Every message the group's other connections sent, in every shard.
    Peers,
}

/// One publisher's part in this shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublisherRecord {
    /// Publisher name.
    pub name: String,
    /// Whether it published in this shard.
    pub publishes_here: bool,
    /// `split = true`: every shard publishes a share.
    pub split: bool,
    /// Messages it published in this shard.
    pub published: u64,
}

/// The expected messages deferred by `shards`, reconciled over all of them: for a
/// `publisher` group, each settled subscriber expects everything that publisher published in
/// every shard; for a `peers` group, each connection expects what every other connection of
/// the group sent, in every shard.
#[must_use]
pub fn reconciled_expected(shards: &[ShardRecord]) -> u64 {
    let Some(first) = shards.first() else {
        return 0;
    };
    let published = |p: usize| -> u64 {
        shards
            .iter()
            .filter_map(|s| s.publishers.get(p))
            .map(|r| r.published)
            .sum()
    };
    let mut expected = 0u64;
    for (g, _) in first.groups.iter().enumerate() {
        let records: Vec<&GroupRecord> = shards.iter().filter_map(|s| s.groups.get(g)).collect();
        let peers = records.iter().any(|r| r.deferred == Some(Deferred::Peers));
        if peers {
            let settled: u64 = records.iter().map(|r| r.settled).sum();
            let sent: u64 = records.iter().map(|r| r.sent).sum();
            expected += settled.saturating_mul(sent).saturating_sub(sent);
            continue;
        }
        for r in &records {
            if let Some(Deferred::Publisher { publisher }) = r.deferred {
                expected += r.settled.saturating_mul(published(publisher));
            }
        }
    }
    expected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, groups: Vec<GroupRecord>, published: u64) -> ShardRecord {
        ShardRecord {
            index,
            count: 3,
            host: None,
            clock_source: None,
            start_at_unix_us: None,
            start_offset_us: None,
            clock_offset: None,
            whole_plan: String::new(),
            groups,
            publishers: vec![PublisherRecord {
                name: "news".to_owned(),
                publishes_here: index == 0,
                split: false,
                published,
            }],
        }
    }

    fn group(settled: u64, sent: u64, deferred: Option<Deferred>) -> GroupRecord {
        GroupRecord {
            name: "g".to_owned(),
            whole_count: 9,
            conn_base: 0,
            connections: 3,
            settled,
            sent,
            deferred,
        }
    }

    #[test]
    fn deferred_publisher_and_peer_expectations_reconcile_over_all_shards() {
        let on = Some(Deferred::Publisher { publisher: 0 });
        // Group 0 expects publisher 0 (100 messages, published on shard 0 only): shard 0
        // counted its 3 subscribers itself, shards 1 and 2 deferred theirs (3 + 2).
        // Group 1 is a chat of 9 connections that sent 10 + 20 + 30 messages.
        let shards = vec![
            shard(
                0,
                vec![group(3, 0, None), group(3, 10, Some(Deferred::Peers))],
                100,
            ),
            shard(
                1,
                vec![group(3, 0, on), group(3, 20, Some(Deferred::Peers))],
                0,
            ),
            shard(
                2,
                vec![group(2, 0, on), group(3, 30, Some(Deferred::Peers))],
                0,
            ),
        ];
        // 5 x 100 + (9 x 60 - 60).
        assert_eq!(reconciled_expected(&shards), 500 + 480);
        assert_eq!(reconciled_expected(&[]), 0);
        // Round trip through run.json.
        let text = serde_json::to_string(&shards[1]).expect("serialises");
        assert!(
            text.contains(r#""deferred":{"expect":"publisher","publisher":0}"#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<ShardRecord>(&text).expect("reads back"),
            shards[1]
        );
    }
}
