//! Source ports: when one source address would open more connections to one target than
//! Linux's ephemeral port search handles quickly.
//!
//! Linux gives `connect()` the even ports of `ip_local_port_range` first; once the even ports
//! to one target address are all in use, every further connect scans all of them before it
//! tries an odd one. Measured here: a 19,000-stream ramp at 5,000/s from one address stalled
//! past ~14,100 connections (half of 32768-60999) with loadgen's cores in the kernel's
//! `__inet_hash_connect`, connect p99 4.4 s; from two addresses (`source_addrs`), p99 22 ms.

/// Where Linux keeps the ephemeral port range.
const PORT_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The ephemeral port range (low, high), when this system has the file.
#[must_use]
pub fn local_port_range() -> Option<(u16, u16)> {
    parse_range(&std::fs::read_to_string(PORT_RANGE_FILE).ok()?)
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

/// A warning when `connections` spread over `sources` source addresses (none given: one, the
/// kernel's choice) put more than half of `range` on one address.
#[must_use]
pub fn crowding_warning(connections: u64, sources: usize, range: (u16, u16)) -> Option<String> {
    let ports = u64::from(range.1) - u64::from(range.0) + 1;
    let half = ports / 2;
    let addresses = sources.max(1) as u64;
    let per_address = connections.div_ceil(addresses);
    if per_address <= half {
        return None;
    }
    let needed = connections.div_ceil(half);
    Some(format!(
        "{connections} connections from {addresses} source address(es) is {per_address} per address, \
         more than half the ephemeral port range {}-{} ({half}): past that, Linux searches all the \
         ports on every connect and the ramp stalls (connect latency of seconds, loadgen's CPU in \
         the kernel) when they go to one target address; set `source_addrs` to at least {needed} \
         local addresses (any 127.0.0.0/8 address for a loopback target)",
        range.0, range.1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_file_parses_and_garbage_does_not() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("lots"), None);
        assert_eq!(parse_range(""), None);
    }

    #[test]
    fn warns_past_half_the_range_per_address_and_names_the_fix() {
        let range = (32768, 60999);
        assert_eq!(crowding_warning(14_116, 0, range), None);
        let w = crowding_warning(19_000, 0, range).expect("over half");
        assert!(
            w.contains("19000 connections from 1 source address(es)"),
            "{w}"
        );
        assert!(w.contains("`source_addrs` to at least 2"), "{w}");
        assert_eq!(crowding_warning(19_000, 2, range), None);
        let w = crowding_warning(50_000, 2, range).expect("25,000 per address");
        assert!(w.contains("at least 4"), "{w}");
    }
}
