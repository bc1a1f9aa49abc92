//! Publishers: stamped messages at a fixed rate (open model), each stamped with its intended
//! schedule slot, over HTTP POST or a WebSocket.

use std::sync::atomic::Ordering;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::post::Poster;
use super::request::Rendered;
use super::schedule::Schedule;
use super::{Ctx, Outgoing, stamped_message, stopped};
use crate::live::stats::Shard;
use crate::scenario::template::Vars;
use crate::scenario::{PublishVia, Publisher, RunShard};

/// Which sequence numbers a publisher's messages carry: slot `k` (from 1) gets
/// `(k - 1) * every + first`. A publisher split over N shards uses `first = shard + 1`,
/// `every = N`, so the shards' numbers interleave into one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqPlan {
    first: u64,
    every: u64,
}

impl SeqPlan {
    /// 1, 2, 3, ...
    pub(crate) const WHOLE: Self = Self { first: 1, every: 1 };

    /// Shard `i` of `n`: `i+1`, `i+1+n`, ...
    pub(crate) fn interleaved(shard: RunShard) -> Self {
        Self {
            first: u64::from(shard.index) + 1,
            every: u64::from(shard.count.max(1)),
        }
    }

    /// The number of schedule slot `slot` (from 1).
    pub(crate) fn seq(self, slot: u64) -> u64 {
        slot.saturating_sub(1)
            .saturating_mul(self.every)
            .saturating_add(self.first)
    }
}

/// Publishes from the moment sending starts until it stops; `index` is this publisher's
/// position (its sent count feeds the subscribers' expectations).
pub(crate) async fn run(ctx: Ctx, spec: Publisher, index: usize, shard: Shard, seqs: SeqPlan) {
    let mut start = ctx.start_sending.clone();
    let mut stop = ctx.stop_sending.clone();
    tokio::select! {
        () = stopped(&mut stop) => return,
        () = stopped(&mut start) => {}
    }
    let index_u64 = index as u64;
    let vars = Vars {
        conn: index_u64,
        group_conn: index_u64,
        seed: ctx.seed,
    };
    let rendered = Rendered::for_publisher(&ctx, &spec, &vars);
    let mut ws = match spec.via {
        PublishVia::Http => None,
        PublishVia::Ws => match super::ws::connect(&ctx, &rendered).await {
            Ok((mut socket, _tls_us)) => {
                for text in &rendered.on_connect {
                    let _ = socket.send(Message::text(text.clone())).await;
                }
                Some(socket)
            }
            Err(e) => {
                tracing::warn!(publisher = %spec.name, "cannot connect: {e}");
                shard.count(|c| e.count(c));
                return;
            }
        },
    };
    let mut poster = Poster::from(&rendered);
    let fields = wire::StampFields::default();
    let mut schedule = Schedule::at_rate(&ctx.timer, spec.rate, 0.0);
    let stop = stopped(&mut stop);
    tokio::pin!(stop);
    while let Some(slot) = schedule.next_until(stop.as_mut()).await {
        // Stamped with the intended slot, not the moment this task got to run.
        let ts = ctx.clock.unix_us(slot.at);
        let out = Outgoing {
            fields: &fields,
            pointer: "",
            prefix: &spec.frame.prefix,
        };
        let text = stamped_message(
            &rendered.template,
            out,
            seqs.seq(slot.seq),
            ts,
            spec.payload_bytes,
        );
        ctx.record_send(&shard, slot);
        let ok = match &mut ws {
            Some(socket) => socket.send(Message::text(text)).await.is_ok(),
            None => {
                let posted = poster
                    .post(&ctx, &rendered.path, text, &rendered.headers)
                    .await;
                matches!(posted, Ok((s, _)) if (200..300).contains(&s))
            }
        };
        // Counted as published either way: a subscriber expects every slot, and a failed
        // send is reported as a send error, not hidden.
        ctx.published[index].fetch_add(1, Ordering::AcqRel);
        shard.count(|c| {
            c.messages_sent += 1;
            if !ok {
                c.send_errors += 1;
            }
        });
    }
    if let Some(mut socket) = ws {
        let _ = socket.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_shards_number_their_slots_into_one_sequence() {
        assert_eq!(
            (1..=3).map(|k| SeqPlan::WHOLE.seq(k)).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let mut all: Vec<u64> = (0..3)
            .flat_map(|i| {
                let plan = SeqPlan::interleaved(RunShard { index: i, count: 3 });
                (1..=4).map(move |k| plan.seq(k))
            })
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=12).collect::<Vec<_>>());
    }
}
