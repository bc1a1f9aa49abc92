//! Test hosts in Linux network namespaces: each host is a namespace with its own address on a
//! private /24, all joined by a bridge in the caller's namespace, so that processes started
//! inside them talk over real (virtual) Ethernet instead of loopback. Everything is created
//! with iproute2's `ip` and removed when the [`TestNet`] is dropped.
//!
//! Needs root and `ip` (Debian's `iproute2`); `.ci/run` runs as root and installs it. Without
//! them [`TestNet::require`] fails the test with a message saying so: a test that could not
//! run never counts as passed. Load only ever goes to these addresses.

use std::net::Ipv4Addr;
use std::process::Command;

/// A private network of test hosts (`10.<net>.0.0/24`) behind one bridge.
#[derive(Debug)]
pub struct TestNet {
    tag: String,
    net: u8,
    bridge: String,
    hosts: Vec<String>,
}

/// One host of a [`TestNet`]: a namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace (`ip netns exec <name> ...`).
    pub namespace: String,
    /// Its address on the test network.
    pub addr: Ipv4Addr,
}

impl Host {
    /// `ip netns exec <namespace> <program>`: a command to start inside this host.
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace]).arg(program);
        c
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process can create namespaces: root and `ip` present.
///
/// # Errors
/// What is missing, and how to get it.
pub fn available() -> Result<(), String> {
    if effective_uid() != 0 {
        return Err("network-namespace tests need root (CI runs as root)".to_owned());
    }
    Command::new("ip").arg("-V").output().map_err(|_| {
        "`ip` is missing: apt-get install iproute2 (.ci/run installs it)".to_owned()
    })?;
    Ok(())
}

/// The effective user id, from `/proc/self/status` (no extra crate for one number).
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

impl TestNet {
    /// A network `10.<net>.0.0/24` whose names carry `tag` (keep it short: interface names
    /// have at most 15 characters).
    ///
    /// # Errors
    /// The failing `ip` command.
    pub fn new(tag: &str, net: u8) -> Result<Self, String> {
        available()?;
        let bridge = format!("br-{tag}");
        let this = Self {
            tag: tag.to_owned(),
            net,
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        // A bridge left by an interrupted run of the same tag goes first.
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(this)
    }

    /// [`TestNet::new`], failing the test with the reason when namespaces cannot be made.
    #[must_use]
    pub fn require(tag: &str, net: u8) -> Self {
        Self::new(tag, net).unwrap_or_else(|e| panic!("cannot build the test network: {e}"))
    }

    /// Adds host number `n` (1..=250): namespace `<tag>-<n>`, address `10.<net>.0.<n>`.
    ///
    /// # Errors
    /// The failing `ip` command.
    pub fn host(&mut self, n: u8) -> Result<Host, String> {
        let namespace = format!("{}-{n}", self.tag);
        let outside = format!("v{}{n}", self.tag);
        let inside = format!("{outside}i");
        let addr = Ipv4Addr::new(10, self.net, 0, n);
        let _ = ip(&["netns", "del", &namespace]);
        ip(&["netns", "add", &namespace])?;
        self.hosts.push(namespace.clone());
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &namespace])?;
        ip(&["link", "set", &outside, "master", &self.bridge])?;
        ip(&["link", "set", &outside, "up"])?;
        let cidr = format!("{addr}/24");
        for args in [
            vec!["addr", "add", cidr.as_str(), "dev", inside.as_str()],
            vec!["link", "set", inside.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", namespace.as_str(), "ip"];
            full.extend(args);
            ip(&full)?;
        }
        Ok(Host { namespace, addr })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in &self.hosts {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
