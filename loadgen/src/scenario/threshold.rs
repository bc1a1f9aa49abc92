//! Pass/fail rules: `"delivery.p99 < 50ms"`, `"connect.max <= 1s"`, `"gaps == 0"`.
//!
//! Left side: a latency statistic `<metric>.<stat>` (metrics `connect`, `tls`, `first_event`,
//! `delivery`, `ws_rtt`, `reconnect`, `send_lag`, `interarrival`; stats `min`, `mean`, `p50`, `p90`, `p95`, `p99`,
//! `p99.9`, `max`) compared with a duration, or a counter (see [`COUNTERS`]) compared with a
//! number. Operators: `<`, `<=`, `>`, `>=`, `==`, `!=`.

use super::units::parse_duration;

/// Latency metrics a threshold may name.
pub const LATENCY_METRICS: [&str; 8] = [
    "connect",
    "tls",
    "first_event",
    "delivery",
    "ws_rtt",
    "reconnect",
    "send_lag",
    "interarrival",
];
/// Statistics of a latency metric.
pub const STATS: [&str; 8] = ["min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"];
/// Counters a threshold may name.
pub const COUNTERS: [&str; 17] = [
    "errors",
    "gaps",
    "gaps_across_reconnects",
    "duplicates",
    "out_of_order",
    "parse_errors",
    "reconnects",
    "server_drops",
    "lost",
    "connections_attempted",
    "connections_established",
    "connections_failed",
    "failed_tls",
    "h2_connections",
    "messages_expected",
    "messages_received",
    "messages_sent",
];

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }

    /// Whether `left op right` holds.
    #[must_use]
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Self::Lt => left < right,
            Self::Le => left <= right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
            Self::Eq => (left - right).abs() < f64::EPSILON,
            Self::Ne => (left - right).abs() >= f64::EPSILON,
        }
    }
}

/// What a threshold looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A latency statistic, compared in microseconds.
    Latency {
        /// e.g. `delivery`
        metric: String,
        /// e.g. `p99`
        stat: String,
    },
    /// A counter.
    Counter(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The rule as written.
    pub text: String,
    /// What it looks at.
    pub subject: Subject,
    /// The comparison.
    pub op: Op,
    /// The limit: microseconds for latencies, a count for counters.
    pub limit: f64,
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses one rule; the message says what is allowed.
pub(crate) fn parse(text: &str) -> Result<Threshold, String> {
    let ops = ["<=", ">=", "==", "!=", "<", ">"];
    let (at, op_text) = ops
        .iter()
        .filter_map(|op| text.find(op).map(|i| (i, *op)))
        .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
        .ok_or_else(|| format!("`{text}` has no comparison; use one of < <= > >= == !="))?;
    let op = match op_text {
        "<=" => Op::Le,
        ">=" => Op::Ge,
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        _ => Op::Gt,
    };
    let left = text[..at].trim();
    let right = text[at + op_text.len()..].trim();
    let subject = if let Some((metric, stat)) = left.split_once('.') {
        if !LATENCY_METRICS.contains(&metric) {
            return Err(format!(
                "unknown latency metric `{metric}`; use one of {}",
                LATENCY_METRICS.join(", ")
            ));
        }
        if !STATS.contains(&stat) {
            return Err(format!(
                "unknown statistic `{stat}`; use one of {}",
                STATS.join(", ")
            ));
        }
        Subject::Latency {
            metric: metric.to_owned(),
            stat: stat.to_owned(),
        }
    } else if COUNTERS.contains(&left) {
        Subject::Counter(left.to_owned())
    } else {
        return Err(format!(
            "unknown subject `{left}`; use <metric>.<stat> (e.g. delivery.p99) or a counter: {}",
            COUNTERS.join(", ")
        ));
    };
    let limit = match subject {
        Subject::Latency { .. } => {
            let d = parse_duration(right)?;
            d.as_secs_f64() * 1e6
        }
        Subject::Counter(_) => right
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{right}` is not a non-negative number"))?,
    };
    let text = format!("{left} {} {right}", op.symbol());
    Ok(Threshold {
        text,
        subject,
        op,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_into_subject_op_limit() {
        let t = parse("delivery.p99 < \"50ms\"").expect("valid");
        assert_eq!(
            t.subject,
            Subject::Latency {
                metric: "delivery".into(),
                stat: "p99".into()
            }
        );
        assert_eq!((t.op, t.limit), (Op::Lt, 50_000.0));
        let t = parse("connect.p99.9<=1s").expect("valid");
        assert_eq!((t.op, t.limit), (Op::Le, 1e6));
        let t = parse("gaps == 0").expect("valid");
        assert_eq!(
            (t.subject, t.op, t.limit),
            (Subject::Counter("gaps".into()), Op::Eq, 0.0)
        );
        assert!(parse("gaps >= 2").is_ok_and(|t| t.op.holds(2.0, t.limit)));
    }

    #[test]
    fn bad_rules_say_what_is_allowed() {
        assert!(
            parse("delivery.p99 50ms")
                .expect_err("must be refused")
                .contains("no comparison")
        );
        assert!(
            parse("latency.p99 < 5ms")
                .expect_err("must be refused")
                .contains("unknown latency metric")
        );
        assert!(
            parse("delivery.p42 < 5ms")
                .expect_err("must be refused")
                .contains("unknown statistic")
        );
        assert!(
            parse("delivery.p99 < 5")
                .expect_err("must be refused")
                .contains("no unit")
        );
        assert!(
            parse("oops == 0")
                .expect_err("must be refused")
                .contains("unknown subject")
        );
        assert!(
            parse("gaps == many")
                .expect_err("must be refused")
                .contains("not a non-negative number")
        );
    }
}
