//! A faulty network for tests: a client host and a server host in their own network
//! namespaces, joined through a router namespace that misbehaves on demand.
//!
//! ```text
//!   client 10.<n>.1.2 ── router 10.<n>.1.1 | 10.<n>.2.1 ── server 10.<n>.2.2 (+ side door 10.<n>.2.3)
//! ```
//!
//! Faults touch only traffic of the server's main address; its second address, the *side
//! door*, stays clean (a publisher that must not be disturbed while its subscribers are).
//! - **Delay**: packets from the server to the client go through a user-space delay line (a
//!   TUN device in the router, chosen by policy routing) that holds each one for a fixed time;
//!   this kernel has no `netem`, so the line does what `tc qdisc ... netem delay` would do, on
//!   real packets, one way (the round trip grows by the delay).
//! - **Loss**, **partition**, **reset**: nftables rules in the router's forward chain (random
//!   drops with `numgen`, drop everything, `reject with tcp reset`), plus `ss -K` in the client
//!   to reset the connections already open. [`FaultNet::heal`] removes the rules.
//!
//! Needs root, iproute2 (`ip`, `ss`) and nftables (`nft`); `.ci/run` installs them. Load only
//! ever goes to these private addresses.

use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::netns::{Host, available};

/// Routing table in the router that sends the server's packets into the delay line.
const DELAY_TABLE: &str = "100";

/// A client, a server and a faulty router between them.
#[derive(Debug)]
pub struct FaultNet {
    /// Where loadgen runs: `10.<n>.1.2`.
    pub client: Host,
    /// Where the target runs: `10.<n>.2.2`, the address faults apply to.
    pub server: Host,
    /// The server host's second address, `10.<n>.2.3`: no fault touches it.
    pub side_door: Ipv4Addr,
    router: String,
    delay_device: String,
    delaying: bool,
}

/// Runs a command, returning its stdout or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `args` inside namespace `ns`.
fn inside(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend(args);
    run("ip", &full)
}

impl FaultNet {
    /// Builds the three hosts on `10.<net>.1.0/24` and `10.<net>.2.0/24`; `tag` (at most 8
    /// characters) names the namespaces and interfaces.
    ///
    /// # Errors
    /// What is missing (root, `ip`, `nft`) or the failing command.
    pub fn new(tag: &str, net: u8) -> Result<Self, String> {
        available()?;
        run("nft", &["--version"])
            .map_err(|_| "`nft` is missing: apt-get install nftables (.ci/run installs it)")?;
        let [client, router, server] = [format!("{tag}-c"), format!("{tag}-r"), format!("{tag}-s")];
        for ns in [&client, &router, &server] {
            let _ = run("ip", &["netns", "del", ns]);
            run("ip", &["netns", "add", ns])?;
            inside(ns, &["ip", "link", "set", "lo", "up"])?;
        }
        let this = Self {
            client: Host {
                namespace: client.clone(),
                addr: Ipv4Addr::new(10, net, 1, 2),
            },
            server: Host {
                namespace: server.clone(),
                addr: Ipv4Addr::new(10, net, 2, 2),
            },
            side_door: Ipv4Addr::new(10, net, 2, 3),
            router: router.clone(),
            delay_device: format!("d{tag}"),
            delaying: false,
        };
        this.link(&client, &format!("{tag}c"), 1, &[2])?;
        this.link(&server, &format!("{tag}s"), 2, &[2, 3])?;
        inside(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for scope in ["all", "default"] {
            let key = format!("net.ipv4.conf.{scope}.rp_filter=0");
            inside(&router, &["sysctl", "-qw", &key])?;
        }
        let rules = "add table inet fault { chain forward { type filter hook forward priority 0; policy accept; }; }";
        inside(&router, &["nft", rules])?;
        Ok(this)
    }

    /// [`FaultNet::new`], failing the test with the reason when the network cannot be built.
    #[must_use]
    pub fn require(tag: &str, net: u8) -> Self {
        Self::new(tag, net).unwrap_or_else(|e| panic!("cannot build the fault network: {e}"))
    }

    /// Joins `host` to the router by a veth pair named `<name>`/`<name>r` on `10.<net>.<side>.0/24`:
    /// the router is `.1`, the host gets `.<h>` for each `h` of `hosts` (the first is its main
    /// address) and a default route through the router.
    fn link(&self, host: &str, name: &str, side: u8, hosts: &[u8]) -> Result<(), String> {
        let net = self.server.addr.octets()[1];
        let on_router = format!("{name}r");
        run(
            "ip",
            &[
                "link",
                "add",
                name,
                "netns",
                host,
                "type",
                "veth",
                "peer",
                "name",
                &on_router,
                "netns",
                &self.router,
            ],
        )?;
        let router_addr = format!("10.{net}.{side}.1/24");
        inside(
            &self.router,
            &["ip", "addr", "add", &router_addr, "dev", &on_router],
        )?;
        inside(&self.router, &["ip", "link", "set", &on_router, "up"])?;
        for h in hosts {
            let addr = format!("10.{net}.{side}.{h}/24");
            inside(host, &["ip", "addr", "add", &addr, "dev", name])?;
        }
        inside(host, &["ip", "link", "set", name, "up"])?;
        let gateway = format!("10.{net}.{side}.1");
        inside(host, &["ip", "route", "add", "default", "via", &gateway])?;
        Ok(())
    }

    /// The router's interface towards the server.
    fn towards_server(&self) -> String {
        let tag = self.router.trim_end_matches("-r");
        format!("{tag}sr")
    }

    /// From now on every packet the server's main address sends to the client is held `by`
    /// before it goes on (one way: the round trip grows by `by`, as with `netem delay`). A
    /// second call is refused.
    ///
    /// # Errors
    /// The TUN device or routing could not be set up.
    pub fn delay(&mut self, by: Duration) -> Result<(), String> {
        if self.delaying {
            return Err("the delay line is already in place".to_owned());
        }
        let mut config = tun::Configuration::default();
        config.tun_name(&self.delay_device).up();
        let device =
            tun::create(&config).map_err(|e| format!("cannot create a TUN device: {e}"))?;
        self.delaying = true;
        // Created here, moved into the router: the file descriptor stays ours.
        run(
            "ip",
            &["link", "set", &self.delay_device, "netns", &self.router],
        )?;
        let r = &self.router;
        let dev = self.delay_device.as_str();
        inside(r, &["ip", "link", "set", dev, "up"])?;
        let key = format!("net.ipv4.conf.{dev}.rp_filter=0");
        inside(r, &["sysctl", "-qw", &key])?;
        inside(
            r,
            &[
                "ip",
                "route",
                "add",
                "default",
                "dev",
                dev,
                "table",
                DELAY_TABLE,
            ],
        )?;
        let from = self.server.addr.to_string();
        let iif = self.towards_server();
        inside(
            r,
            &[
                "ip",
                "rule",
                "add",
                "iif",
                &iif,
                "from",
                &from,
                "lookup",
                DELAY_TABLE,
            ],
        )?;
        let (mut reader, mut writer) = device.split();
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        // Packets in, stamped with when they may leave; they leave in order, after `by`. The
        // threads end when the device goes (the router namespace is deleted on drop).
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = reader.read(&mut buf) {
                if tx.send((Instant::now() + by, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, packet) in rx {
                hold_until(due);
                if writer.write(&packet).is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    fn nft_rules(&self, rules: &[String]) -> Result<(), String> {
        for rule in rules {
            let mut args = vec!["nft", "add", "rule", "inet", "fault", "forward"];
            args.extend(rule.split(' '));
            inside(&self.router, &args)?;
        }
        Ok(())
    }

    /// Both directions of the server's main address, as nft matches.
    fn both_ways(&self) -> [String; 2] {
        let s = self.server.addr;
        [format!("ip daddr {s}"), format!("ip saddr {s}")]
    }

    /// Drops `percent`% of the packets to and from the server's main address, at random.
    ///
    /// # Errors
    /// The failing `nft` command.
    pub fn loss(&self, percent: u8) -> Result<(), String> {
        let rules = self
            .both_ways()
            .map(|m| format!("{m} numgen random mod 100 < {percent} counter drop"));
        self.nft_rules(&rules)
    }

    /// Drops every packet to and from the server's main address until [`FaultNet::heal`].
    ///
    /// # Errors
    /// The failing `nft` command.
    pub fn partition(&self) -> Result<(), String> {
        let rules = self.both_ways().map(|m| format!("{m} counter drop"));
        self.nft_rules(&rules)
    }

    /// Resets every TCP connection between the client and the server's main address (`ss -K`
    /// in the client: both ends get a reset), then answers every TCP packet to or from that
    /// address with a reset until [`FaultNet::heal`]: reconnects are refused meanwhile.
    ///
    /// # Errors
    /// The failing `nft` or `ss` command.
    pub fn reset(&self) -> Result<(), String> {
        let rules = self
            .both_ways()
            .map(|m| format!("{m} meta l4proto tcp counter reject with tcp reset"));
        self.nft_rules(&rules)?;
        self.kill_connections()
    }

    /// Resets the client's TCP connections to the server's main address (`ss -K`): each end
    /// sees a reset, as when a middlebox drops its state.
    ///
    /// # Errors
    /// The failing `ss` command.
    pub fn kill_connections(&self) -> Result<(), String> {
        let dst = self.server.addr.to_string();
        inside(&self.client.namespace, &["ss", "-K", "-t", "dst", &dst]).map(drop)
    }

    /// Removes every loss, partition and reset rule (the delay line stays).
    ///
    /// # Errors
    /// The failing `nft` command.
    pub fn heal(&self) -> Result<(), String> {
        inside(
            &self.router,
            &["nft", "flush", "chain", "inet", "fault", "forward"],
        )
        .map(drop)
    }

    /// Packets the fault rules dropped or rejected so far (their nft counters summed).
    #[must_use]
    pub fn faulted_packets(&self) -> u64 {
        let listing = inside(
            &self.router,
            &["nft", "list", "chain", "inet", "fault", "forward"],
        )
        .unwrap_or_default();
        listing
            .split("counter packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// TCP segments `host` retransmitted so far (`RetransSegs` of its namespace's
    /// `/proc/net/snmp`).
    #[must_use]
    pub fn retransmitted(host: &Host) -> u64 {
        let snmp = inside(&host.namespace, &["cat", "/proc/net/snmp"]).unwrap_or_default();
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "RetransSegs")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Waits until `due`: sleeps to [`SPIN`] before it, then yields until it (a sleep alone
/// overshoots by the timer slack, ~50 µs or more on a busy machine).
fn hold_until(due: Instant) {
    if let Some(wait) = due.checked_duration_since(Instant::now() + SPIN) {
        std::thread::sleep(wait);
    }
    while Instant::now() < due {
        std::thread::yield_now();
    }
}

/// How long before a packet is due the delay line stops sleeping and polls the clock.
const SPIN: Duration = Duration::from_micros(300);

impl Drop for FaultNet {
    fn drop(&mut self) {
        if self.delaying {
            let _ = inside(&self.router, &["ip", "link", "del", &self.delay_device]);
        }
        // Deleting a namespace deletes its veth ends, and with them their peers.
        for ns in [&self.client.namespace, &self.server.namespace, &self.router] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}
