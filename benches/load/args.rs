//! Command-line options as `--name value` pairs (repeatable names keep every value), read into
//! typed values by the mode that needs them. Small enough not to need an argument crate.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Reads `--name value` and `-n value` pairs; `--flag` without a value (followed by another
    /// option or nothing) counts as `true`.
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < argv.len() {
            let name = argv[i]
                .strip_prefix("--")
                .or_else(|| argv[i].strip_prefix('-'))
                .ok_or_else(|| format!("unexpected argument {}", argv[i]))?;
            let value = match argv.get(i + 1) {
                Some(v) if !v.starts_with('-') || v.parse::<f64>().is_ok() => {
                    i += 1;
                    v.clone()
                }
                _ => "true".to_string(),
            };
            values.entry(name.to_string()).or_default().push(value);
            i += 1;
        }
        Ok(Args { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn num<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot read {v:?}")),
        }
    }

    pub fn all<T: FromStr>(&self, name: &str) -> Result<Vec<T>, String> {
        let list = self.values.get(name).map(Vec::as_slice).unwrap_or(&[]);
        list.iter()
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name}: cannot read {v:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn pairs_flags_and_repeats() {
        let a = args("-n 10 --server-pid 1 --server-pid 2 --quiet --offset -5");
        assert_eq!(a.num("n", 0usize), Ok(10));
        assert_eq!(a.all::<u32>("server-pid"), Ok(vec![1, 2]));
        assert_eq!(a.get("quiet"), Some("true"));
        assert_eq!(a.num("offset", 0i32), Ok(-5));
        assert_eq!(a.num("missing", 7u8), Ok(7));
        assert!(a.require("sub-url").is_err());
        assert!(a.num::<u32>("quiet", 0).is_err());
    }
}
