//! Latency histograms: an HDR histogram per measured phase, sent between processes as a line of
//! `value:count` pairs so a coordinator can merge what its workers recorded.

use hdrhistogram::Histogram;

/// Nanosecond latencies from 1 ns to an hour at three significant digits (0.1% error).
pub struct Latencies(Histogram<u64>);

/// The figures a report prints for one histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap())
    }
}

impl Latencies {
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn summary(&self) -> Summary {
        let h = &self.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }

    /// Appends the recorded buckets as ` value:count` pairs.
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        for v in self.0.iter_recorded() {
            write!(out, " {}:{}", v.value_iterated_to(), v.count_at_value()).unwrap();
        }
    }

    /// Adds pairs written by [`Latencies::encode`], possibly by another process.
    pub fn merge_encoded(&mut self, pairs: &str) -> Result<(), String> {
        for pair in pairs.split_whitespace() {
            let (v, c) = pair
                .split_once(':')
                .ok_or_else(|| format!("bad bucket {pair}"))?;
            let v: u64 = v.parse().map_err(|_| format!("bad bucket {pair}"))?;
            let c: u64 = c.parse().map_err(|_| format!("bad bucket {pair}"))?;
            self.0.saturating_record_n(v.max(1), c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: u64, b: u64) -> bool {
        a.abs_diff(b) * 1000 <= b
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Latencies::default();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!(close(s.p50, 500_000), "{s:?}");
        assert!(close(s.p90, 900_000), "{s:?}");
        assert!(close(s.p99, 990_000), "{s:?}");
        assert!(close(s.max, 1_000_000), "{s:?}");
    }

    #[test]
    fn merging_encoded_halves_equals_recording_all() {
        let (mut a, mut b, mut all) = (
            Latencies::default(),
            Latencies::default(),
            Latencies::default(),
        );
        for v in 1..=5000u64 {
            let ns = v * 37;
            if v % 2 == 0 {
                a.record(ns)
            } else {
                b.record(ns)
            }
            all.record(ns);
        }
        let mut merged = Latencies::default();
        for h in [&a, &b] {
            let mut line = String::new();
            h.encode(&mut line);
            merged.merge_encoded(&line).unwrap();
        }
        assert_eq!(merged.summary(), all.summary());
        assert!(merged.merge_encoded("12").is_err());
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Latencies::default().summary(), Summary::default());
    }
}
