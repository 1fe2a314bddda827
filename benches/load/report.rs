//! Results, twice: one JSON object per line on stdout for scripts, and aligned `name  value` lines
//! on stderr for people. Both are built from the same ordered list of fields.

use std::fmt::Write;

use crate::hist::Summary;

pub enum Value {
    Int(u64),
    Num(f64),
    Text(String),
}

/// An ordered list of named figures.
#[derive(Default)]
pub struct Report {
    fields: Vec<(String, Value)>,
}

impl Report {
    pub fn int(&mut self, name: &str, v: u64) -> &mut Self {
        self.fields.push((name.into(), Value::Int(v)));
        self
    }

    pub fn num(&mut self, name: &str, v: f64) -> &mut Self {
        self.fields
            .push((name.into(), Value::Num(if v.is_finite() { v } else { 0.0 })));
        self
    }

    pub fn text(&mut self, name: &str, v: &str) -> &mut Self {
        self.fields.push((name.into(), Value::Text(v.into())));
        self
    }

    /// Adds `PREFIX_p50_us` and friends, in microseconds.
    pub fn latencies(&mut self, prefix: &str, s: &Summary) -> &mut Self {
        self.int(&format!("{prefix}_count"), s.count);
        for (name, ns) in [
            ("p50", s.p50),
            ("p90", s.p90),
            ("p99", s.p99),
            ("max", s.max),
        ] {
            self.num(&format!("{prefix}_{name}_us"), ns as f64 / 1000.0);
        }
        self
    }

    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for (i, (name, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            write!(s, "\"{name}\":").unwrap();
            match v {
                Value::Int(n) => write!(s, "{n}").unwrap(),
                Value::Num(x) => write!(s, "{}", (x * 1000.0).round() / 1000.0).unwrap(),
                Value::Text(t) => json_string(&mut s, t),
            }
        }
        s.push('}');
        s
    }

    pub fn to_text(&self) -> String {
        let width = self.fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (name, v) in &self.fields {
            match v {
                Value::Int(n) => writeln!(s, "  {name:width$}  {n}").unwrap(),
                Value::Num(x) => writeln!(s, "  {name:width$}  {x:.3}").unwrap(),
                Value::Text(t) => writeln!(s, "  {name:width$}  {t}").unwrap(),
            }
        }
        s
    }
}

fn json_string(out: &mut String, t: &str) {
    out.push('"');
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_carry_the_same_fields() {
        let mut r = Report::default();
        r.text("mode", "sse \"x\"")
            .int("held", 10)
            .num("ratio", 1.23456);
        r.latencies(
            "lat",
            &Summary {
                count: 2,
                p50: 1500,
                p90: 2000,
                p99: 2000,
                max: 2000,
            },
        );
        assert_eq!(
            r.to_json(),
            r#"{"mode":"sse \"x\"","held":10,"ratio":1.235,"lat_count":2,"lat_p50_us":1.5,"lat_p90_us":2,"lat_p99_us":2,"lat_max_us":2}"#
        );
        assert!(r.to_text().contains("  held        10\n"));
    }
}
