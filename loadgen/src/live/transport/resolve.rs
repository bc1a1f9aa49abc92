//! Name resolution, once per run: every target URL of a scenario becomes an [`Endpoint`]
//! with all its addresses; connections take them round-robin.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::scenario::{ResolvePin, Scenario, TargetUrl};

/// A target URL with the addresses it resolved to (never empty).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) url: TargetUrl,
    pub(crate) addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// A target known by address (the bundled server).
    pub(crate) fn at(addr: SocketAddr) -> Self {
        Self {
            url: TargetUrl::plain(addr),
            addrs: vec![addr],
        }
    }

    /// The address of the `n`th connection to this endpoint (round-robin).
    pub(crate) fn addr_for(&self, n: u64) -> SocketAddr {
        let len = self.addrs.len() as u64;
        self.addrs[usize::try_from(n % len.max(1)).unwrap_or(0)]
    }
}

/// A host name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub struct ResolveError {
    /// The host name.
    pub host: String,
    /// What the resolver said.
    pub reason: String,
}

/// Resolves `url`: a `--resolve` pin for its host and port, else its IP literal, else every
/// address the system resolver returns (in its order, duplicates removed).
///
/// # Errors
/// [`ResolveError`] when the name does not resolve or resolves to nothing.
pub(crate) async fn resolve(
    url: &TargetUrl,
    pins: &[ResolvePin],
) -> Result<Endpoint, ResolveError> {
    let pinned: Vec<SocketAddr> = pins
        .iter()
        .filter(|p| p.host == url.host && p.port == url.port)
        .map(|p| SocketAddr::new(p.addr, url.port))
        .collect();
    let addrs = if !pinned.is_empty() {
        pinned
    } else if let Some(addr) = url.socket_addr() {
        vec![addr]
    } else {
        let found = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| ResolveError {
                host: url.host.clone(),
                reason: e.to_string(),
            })?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        addrs
    };
    if addrs.is_empty() {
        return Err(ResolveError {
            host: url.host.clone(),
            reason: "no addresses".to_owned(),
        });
    }
    Ok(Endpoint {
        url: url.clone(),
        addrs,
    })
}

/// An address that did not accept a TCP connection, and why.
pub(crate) type Refused = (SocketAddr, String);

/// Keeps the addresses of `endpoint` that accept a TCP connection (each tried once, in
/// parallel), so a name that resolves to both `::1` and `127.0.0.1` does not send half the
/// load to an address nothing listens on; the dropped ones are logged. When none accepts,
/// all are kept and the first one's failure is returned with them.
pub(crate) async fn keep_reachable(mut endpoint: Endpoint) -> (Endpoint, Option<Refused>) {
    let checks = endpoint.addrs.iter().map(|&a| async move {
        (
            a,
            super::tcp_connect_from(a, None)
                .await
                .err()
                .map(|e| e.to_string()),
        )
    });
    let results = futures_util::future::join_all(checks).await;
    let reachable: Vec<SocketAddr> = results
        .iter()
        .filter(|(_, failed)| failed.is_none())
        .map(|(a, _)| *a)
        .collect();
    if reachable.is_empty() {
        let first = results
            .into_iter()
            .find_map(|(a, failed)| failed.map(|why| (a, why)));
        return (endpoint, first);
    }
    if reachable.len() < endpoint.addrs.len() {
        let dropped: Vec<String> = results
            .iter()
            .filter(|(_, failed)| failed.is_some())
            .map(|(a, _)| a.to_string())
            .collect();
        tracing::warn!(
            host = %endpoint.url.host,
            "not using {} (no TCP connection); using {reachable:?}",
            dropped.join(", ")
        );
        endpoint.addrs = reachable;
    }
    (endpoint, None)
}

/// Every endpoint of a run: the run's target, each group's and each publisher's.
#[derive(Debug)]
pub(crate) struct Endpoints {
    /// The run's target: one server, or every instance of the bundled one (never empty).
    run: Vec<Arc<Endpoint>>,
    groups: Vec<Vec<Arc<Endpoint>>>,
    publishers: Vec<Arc<Endpoint>>,
}

impl Endpoints {
    /// Resolves every distinct URL of `scenario` once; `run` is the run's target (one, or
    /// the bundled server's instances, which groups and publishers without targets of their
    /// own spread over round-robin).
    ///
    /// # Errors
    /// The first name that does not resolve.
    ///
    /// # Panics
    /// When `run` is empty.
    pub(crate) async fn resolve(
        scenario: &Scenario,
        run: Vec<Arc<Endpoint>>,
        pins: &[ResolvePin],
    ) -> Result<Self, ResolveError> {
        assert!(!run.is_empty(), "a run has a target");
        let mut known: BTreeMap<TargetUrl, Arc<Endpoint>> = BTreeMap::new();
        for e in &run {
            known.insert(e.url.clone(), Arc::clone(e));
        }
        let mut lookup = async |url: &TargetUrl| -> Result<Arc<Endpoint>, ResolveError> {
            if let Some(e) = known.get(url) {
                return Ok(Arc::clone(e));
            }
            // A group's target that refuses everything is kept: its connections' failures
            // are counted with their causes.
            let e = Arc::new(keep_reachable(resolve(url, pins).await?).await.0);
            known.insert(url.clone(), Arc::clone(&e));
            Ok(e)
        };
        let mut groups = Vec::new();
        for g in &scenario.clients {
            let mut list = Vec::new();
            for url in &g.targets {
                list.push(lookup(url).await?);
            }
            groups.push(list);
        }
        let mut publishers = Vec::new();
        for (i, p) in scenario.publishers.iter().enumerate() {
            publishers.push(match &p.target {
                Some(url) => lookup(url).await?,
                None => Arc::clone(&run[i % run.len()]),
            });
        }
        Ok(Self {
            run,
            groups,
            publishers,
        })
    }

    /// Where connection `group_conn` of group `group` goes: its targets (else the run's)
    /// round-robin, then each target's addresses round-robin.
    pub(crate) fn for_group(&self, group: usize, group_conn: u64) -> (Arc<Endpoint>, SocketAddr) {
        let list = self
            .groups
            .get(group)
            .filter(|l| !l.is_empty())
            .unwrap_or(&self.run);
        let n = list.len() as u64;
        let e = &list[usize::try_from(group_conn % n).unwrap_or(0)];
        (Arc::clone(e), e.addr_for(group_conn / n))
    }

    /// Where publisher `i` goes.
    pub(crate) fn for_publisher(&self, i: usize) -> (Arc<Endpoint>, SocketAddr) {
        let e = self.publishers.get(i).unwrap_or(&self.run[0]);
        (Arc::clone(e), e.addr_for(i as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_literals_and_localhost_resolve() {
        let url = TargetUrl::parse("https://api.example.com:8443").expect("url");
        let pin: ResolvePin = "api.example.com:8443:127.0.0.9".parse().expect("pin");
        let e = resolve(&url, &[pin]).await.expect("pinned");
        assert_eq!(
            e.addrs,
            ["127.0.0.9:8443".parse::<SocketAddr>().expect("addr")]
        );
        let lit = TargetUrl::parse("http://127.0.0.3:81").expect("url");
        assert_eq!(resolve(&lit, &[]).await.expect("literal").addrs.len(), 1);
        let local = TargetUrl::parse("http://localhost:81").expect("url");
        let e = resolve(&local, &[]).await.expect("localhost resolves");
        assert!(
            e.addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 81),
            "{e:?}"
        );
        let bad = TargetUrl::parse("http://no-such-host.invalid").expect("url");
        let err = resolve(&bad, &[])
            .await
            .expect_err(".invalid never resolves");
        assert_eq!(err.host, "no-such-host.invalid");
    }

    #[test]
    fn connections_spread_over_targets_then_addresses() {
        let a = Arc::new(Endpoint {
            url: TargetUrl::parse("http://a").expect("url"),
            addrs: vec![
                "127.0.0.1:1".parse().expect("addr"),
                "127.0.0.2:1".parse().expect("addr"),
            ],
        });
        let b = Arc::new(Endpoint::at("127.0.0.3:2".parse().expect("addr")));
        let run = Arc::new(Endpoint::at("127.0.0.4:3".parse().expect("addr")));
        let eps = Endpoints {
            run: vec![run],
            groups: vec![vec![a, b], vec![]],
            publishers: vec![],
        };
        let picks: Vec<String> = (0..4).map(|i| eps.for_group(0, i).1.to_string()).collect();
        assert_eq!(
            picks,
            ["127.0.0.1:1", "127.0.0.3:2", "127.0.0.2:1", "127.0.0.3:2"]
        );
        assert_eq!(eps.for_group(1, 5).1.to_string(), "127.0.0.4:3");
    }

    #[test]
    fn groups_without_targets_spread_over_the_instances() {
        let instance = |a: &str| Arc::new(Endpoint::at(a.parse().expect("addr")));
        let eps = Endpoints {
            run: vec![
                instance("127.0.0.1:1"),
                instance("127.0.0.1:2"),
                instance("127.0.0.1:3"),
            ],
            groups: vec![vec![]],
            publishers: vec![],
        };
        let picks: Vec<String> = (0..4).map(|i| eps.for_group(0, i).1.to_string()).collect();
        assert_eq!(
            picks,
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]
        );
    }
}
