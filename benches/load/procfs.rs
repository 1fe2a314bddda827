//! What the generator reads about other processes from /proc: CPU time, user-space memory (Pss
//! and RSS) and the kernel's slab, so a report can say what each held connection and each
//! delivery cost the server.

use std::fs;

/// `pids` and all their descendants: nginx serves from a worker child of the pid we are given.
pub fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = pids.to_vec();
    let Ok(dir) = fs::read_dir("/proc") else {
        return all;
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_fields(pid)?.get(1)?.parse().ok()?)))
        .collect();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for &(pid, ppid) in &parents {
            if ppid == parent && !all.contains(&pid) {
                all.push(pid);
            }
        }
        i += 1;
    }
    all
}

/// The fields of /proc/PID/stat after the command name, which may itself hold spaces:
/// index 0 is the state, 1 the parent pid, 11 utime and 12 stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time (user + system) of the processes in nanoseconds. /proc/PID/stat counts it in clock
/// ticks of 10 ms, too coarse for a short phase, so the per-thread schedstat (nanoseconds on a CPU)
/// is summed when the kernel has it, and stat's utime + stime is the fallback.
pub fn cpu_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|&pid| schedstat_ns(pid).or_else(|| stat_cpu_ns(pid)).unwrap_or(0))
        .sum()
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0;
    for task in tasks {
        let path = task.ok()?.path().join("schedstat");
        sum += fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()?;
    }
    Some(sum)
}

fn stat_cpu_ns(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let f = stat_fields(pid)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000_000 / hz)
}

/// The first number after `key` in a `Key:   123 kB` style file.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Memory of a set of processes, in kB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// Proportional set size summed over the processes (shared pages split among sharers).
    pub pss_kb: u64,
    pub rss_kb: u64,
    /// The whole machine's kernel slab: socket and TCP state of both ends live here.
    pub slab_kb: u64,
}

pub fn memory(pids: &[u32]) -> Memory {
    let read = |path: String, key: &str| {
        fs::read_to_string(path)
            .ok()
            .and_then(|t| kb_field(&t, key))
    };
    Memory {
        pss_kb: pids
            .iter()
            .filter_map(|p| read(format!("/proc/{p}/smaps_rollup"), "Pss:"))
            .sum(),
        rss_kb: pids
            .iter()
            .filter_map(|p| read(format!("/proc/{p}/status"), "VmRSS:"))
            .sum(),
        slab_kb: read("/proc/meminfo".into(), "Slab:").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = memory(&[me]);
        assert!(m.pss_kb > 0 && m.rss_kb > 0 && m.slab_kb > 0, "{m:?}");
        // Burn CPU until the process has used 20 ms of it: on a shared,
        // busy machine wall time says nothing about CPU time, so the loop
        // watches the figure under test, and a reading stuck at zero (or
        // never moving) fails at the deadline.
        let before = cpu_ns(&[me]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cpu_ns(&[me]) < before + 20_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time never grew: {}",
                cpu_ns(&[me])
            );
            for i in 0..100_000u64 {
                std::hint::black_box(i);
            }
        }
        assert!(with_descendants(&[me]).contains(&me));
        assert!(stat_cpu_ns(me).is_some());
    }

    #[test]
    fn kb_fields() {
        let text = "Rss:  10 kB\nPss:   7 kB\nPss_Anon: 3 kB\n";
        assert_eq!(kb_field(text, "Pss:"), Some(7));
        assert_eq!(kb_field(text, "Swap:"), None);
    }
}
