//! What a run loads: a remote target, or the bundled server as one or several instances
//! (`[server] instances`) with the Redis they share (`[server] redis`). Connections and
//! publishers that name no target of their own spread over the instances round-robin; the
//! server's counters and memory are the sums over every instance.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::live::redis_child::SpawnedRedis;
use crate::live::supervise::{SharedPid, Supervisor};
use crate::live::target::{Probe, Target, TargetError};
use crate::live::transport::{Connector, Endpoint};
use crate::results::report::{InstanceShare, Outage};
use crate::scenario::{RedisSetting, ServerSettings};

/// How long a given Redis may take to accept a TCP connection before the run gives up.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The target of a run: one or more servers, and the Redis loadgen started for them.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// The servers (one for a remote target); never empty.
    pub(crate) instances: Vec<Target>,
    /// The `redis-server` loadgen started (`redis = "spawn"`).
    pub(crate) redis: Option<SpawnedRedis>,
    /// The Redis the instances share, spawned or given.
    pub(crate) redis_url: Option<String>,
}

impl Deployment {
    /// A server someone else runs.
    pub(crate) fn remote(target: Target) -> Self {
        Self {
            instances: vec![target],
            redis: None,
            redis_url: None,
        }
    }

    /// Starts the bundled server (`exe serve`) as `settings` say: its Redis first (spawned,
    /// or a given one checked to accept connections), then every instance, each waited for
    /// until `/healthz` answers `ok`.
    ///
    /// # Errors
    /// [`TargetError`] naming the instance or the Redis that did not come up.
    pub(crate) async fn bundled(
        exe: &Path,
        settings: &ServerSettings,
        connector: &Connector,
    ) -> Result<Self, TargetError> {
        let redis = match settings.redis {
            Some(RedisSetting::Spawn) => Some(SpawnedRedis::start().await?),
            _ => None,
        };
        let redis_url = match (&settings.redis, &redis) {
            (_, Some(spawned)) => Some(spawned.url()),
            (Some(RedisSetting::Url(url)), None) => {
                check_reachable(url).await?;
                Some(url.clone())
            }
            (None, None) | (Some(RedisSetting::Spawn), None) => None,
        };
        let mut args = settings.to_args();
        if let Some(url) = &redis_url {
            args.push(format!("--redis-url={url}"));
        }
        let count = settings.instance_count();
        let mut instances = Vec::new();
        for i in 0..count {
            let target = Target::spawn(exe, &args, connector.clone())
                .await
                .map_err(|e| match (count, e) {
                    (1, e) => e,
                    (_, TargetError::Start(why)) => {
                        TargetError::Start(format!("instance {} of {count}: {why}", i + 1))
                    }
                    (_, e) => TargetError::Start(format!("instance {} of {count}: {e}", i + 1)),
                })?;
            instances.push(target);
        }
        Ok(Self {
            instances,
            redis,
            redis_url,
        })
    }

    /// The pids of its processes, shared with whoever samples them and kept current by
    /// [`Deployment::supervise`] (0 for a remote target and while a process is down).
    pub(crate) fn pids(&self) -> Pids {
        let shared = |pid: Option<u32>| -> SharedPid { Arc::new(AtomicU32::new(pid.unwrap_or(0))) };
        Pids {
            instances: self.instances.iter().map(|t| shared(t.pid())).collect(),
            redis: self.redis.as_ref().map(|r| shared(r.pid())),
        }
    }

    /// Hands every process to a supervisor that starts it again when it dies mid-run (a
    /// remote target's never ends), keeping `pids` current; `failed` is set when one could
    /// not be brought back.
    pub(crate) fn supervise(
        self,
        pids: &Pids,
        t0: Instant,
        failed: &Arc<Mutex<Option<String>>>,
    ) -> Supervised {
        let count = self.instances.len();
        let instances = self
            .instances
            .into_iter()
            .zip(&pids.instances)
            .enumerate()
            .map(|(i, (target, pid))| {
                let name = instance_name(i, count);
                Supervisor::start(target, name, t0, Arc::clone(pid), Arc::clone(failed))
            })
            .collect();
        let redis = self.redis.zip(pids.redis.clone()).map(|(redis, pid)| {
            let name = "the spawned redis-server".to_owned();
            Supervisor::start(redis, name, t0, pid, Arc::clone(failed))
        });
        Supervised { instances, redis }
    }

    /// The first instance's probe: the run's target (clock offset, liveness of a remote one).
    pub(crate) fn probe(&self) -> &Probe {
        self.instances[0].probe()
    }

    /// Every instance's probe.
    pub(crate) fn probes(&self) -> Vec<Probe> {
        self.instances.iter().map(|t| t.probe().clone()).collect()
    }

    /// Every instance's endpoint, in order.
    pub(crate) fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.instances
            .iter()
            .map(|t| Arc::clone(t.probe().endpoint()))
            .collect()
    }

    /// `bundled (http://..)`, or with several instances `bundled, 3 instances over Redis at
    /// redis://..: http://.., http://.., http://..` (for `run.json`).
    pub(crate) fn describe_bundled(&self) -> String {
        let urls: Vec<String> = self.endpoints().iter().map(|e| e.url.to_string()).collect();
        match (&self.redis_url, self.instances.len()) {
            (None, 1) => format!("bundled ({})", urls[0]),
            (None, n) => format!("bundled, {n} instances: {}", urls.join(", ")),
            (Some(redis), n) => format!(
                "bundled, {n} instance{} over Redis at {redis}: {}",
                if n == 1 { "" } else { "s" },
                urls.join(", ")
            ),
        }
    }
}

/// The pids of a deployment's processes ([`Deployment::pids`]).
#[derive(Debug, Clone)]
pub(crate) struct Pids {
    /// One per instance, in order.
    pub(crate) instances: Vec<SharedPid>,
    /// The spawned `redis-server`'s.
    pub(crate) redis: Option<SharedPid>,
}

/// A deployment's processes under supervision.
#[derive(Debug)]
pub(crate) struct Supervised {
    instances: Vec<Supervisor<Target>>,
    redis: Option<Supervisor<SpawnedRedis>>,
}

impl Supervised {
    /// Stops watching, stops the instances (SIGTERM) and then the Redis they shared; returns
    /// the outages they had.
    pub(crate) async fn stop(self) -> Vec<Outage> {
        let mut outages = Vec::new();
        for supervisor in self.instances {
            if let Ok((target, had)) = supervisor.finish().await {
                target.stop().await;
                outages.extend(had);
            }
        }
        if let Some(supervisor) = self.redis
            && let Ok((redis, had)) = supervisor.finish().await
        {
            redis.stop().await;
            outages.extend(had);
        }
        outages
    }
}

/// What an instance is called in outages: "the bundled server", or "instance 2 of 3 of the
/// bundled server".
pub(crate) fn instance_name(index: usize, count: usize) -> String {
    if count == 1 {
        "the bundled server".to_owned()
    } else {
        format!("instance {} of {count} of the bundled server", index + 1)
    }
}

/// Each probe's `/metrics` (empty for one that does not answer).
pub(crate) async fn scrape_each(probes: &[Probe]) -> Vec<BTreeMap<String, f64>> {
    let mut each = Vec::with_capacity(probes.len());
    for probe in probes {
        each.push(probe.scrape().await);
    }
    each
}

/// Sums scrapes series by series (counters and gauges such as open connections add up over
/// instances).
pub(crate) fn sum_series(scrapes: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut sum = BTreeMap::new();
    for scraped in scrapes {
        add_series(&mut sum, scraped.clone());
    }
    sum
}

/// Each instance's share of the run from its scrapes before and after (none for a single
/// server: its share is the whole).
pub(crate) fn shares(
    probes: &[Probe],
    before: &[BTreeMap<String, f64>],
    after: &[BTreeMap<String, f64>],
) -> Vec<InstanceShare> {
    if probes.len() < 2 {
        return Vec::new();
    }
    probes
        .iter()
        .zip(before.iter().zip(after))
        .map(|(p, (b, a))| InstanceShare::from_scrapes(p.endpoint().url.to_string(), b, a))
        .collect()
}

/// Adds `scraped` into `sum`, series by series.
fn add_series(sum: &mut BTreeMap<String, f64>, scraped: BTreeMap<String, f64>) {
    for (series, value) in scraped {
        *sum.entry(series).or_insert(0.0) += value;
    }
}

/// Checks that a given Redis (`redis://[user:pass@]HOST:PORT[/DB]`) accepts TCP connections,
/// so that a wrong address fails the run at once and by name rather than as instances that
/// never become healthy.
async fn check_reachable(url: &str) -> Result<(), TargetError> {
    let unreachable = |why: String| TargetError::Start(format!("Redis at {url} {why}"));
    let (host, port) = server::backplane::tcp_address(url)
        .map_err(|e| unreachable(format!("is unusable: {e}")))?;
    match tokio::time::timeout(
        REDIS_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(format!("is unreachable: {e}"))),
        Err(_) => Err(unreachable(format!(
            "did not accept a connection within {} s",
            REDIS_CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_add_up_series_by_series() {
        let mut sum = BTreeMap::new();
        add_series(
            &mut sum,
            [("rt_a".to_owned(), 2.0), ("rt_b".to_owned(), 1.0)].into(),
        );
        add_series(
            &mut sum,
            [("rt_a".to_owned(), 3.0), ("rt_c".to_owned(), 4.0)].into(),
        );
        assert_eq!(
            sum,
            [
                ("rt_a".to_owned(), 5.0),
                ("rt_b".to_owned(), 1.0),
                ("rt_c".to_owned(), 4.0)
            ]
            .into()
        );
    }

    #[test]
    fn instances_are_named_only_when_there_are_several() {
        assert_eq!(instance_name(0, 1), "the bundled server");
        assert_eq!(instance_name(1, 3), "instance 2 of 3 of the bundled server");
    }

    #[tokio::test]
    async fn a_given_redis_that_refuses_is_named() {
        // A port just freed: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let err = check_reachable(&url).await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(
            text.contains(&url) && text.contains("unreachable"),
            "{text}"
        );
    }
}
