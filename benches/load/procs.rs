//! Worker processes as the coordinator sees them: spawning this same binary in `worker` mode,
//! reading the lines each reports, and adding up what they recorded.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::hist::Latencies;
use crate::net::LineReader;

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub lines: LineReader,
}

impl Worker {
    pub fn spawn(args: &[String]) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("worker")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        crate::worker::set_nonblocking(stdout.as_raw_fd());
        Ok(Worker {
            child,
            stdin,
            stdout,
            lines: LineReader::default(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the worker the run is over and how many messages were published.
    pub fn end(&mut self, published: u64) {
        let _ = writeln!(self.stdin, "end {published}");
    }

    pub fn reap(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What all workers reported, added up.
#[derive(Default)]
pub struct Reports {
    /// Per worker: `(held, failed, connect_ns)` once it has connected its share.
    pub held: Vec<Option<(u64, u64, u64)>>,
    pub finished: Vec<bool>,
    /// Per message: how many workers have it everywhere, and when the last subscriber got it.
    pub done: Vec<u32>,
    pub last_at: Vec<u64>,
    pub connect: Latencies,
    pub fanout: Latencies,
    /// The one-at-a-time fan-out latency again, per subscribe address (node of a cluster).
    pub by_url: Vec<Latencies>,
    /// Per worker: the index of the address its subscribers subscribe at.
    pub url_of: Vec<usize>,
    pub open: Latencies,
    /// distinct, missing, duplicate, out-of-order, unknown, dropped.
    pub counts: [u64; 6],
}

impl Reports {
    /// `url_of` has one entry per worker: the index of its subscribe address, below `n_urls`.
    pub fn new(url_of: Vec<usize>, n_urls: usize, messages: u64) -> Reports {
        let workers = url_of.len();
        Reports {
            held: vec![None; workers],
            finished: vec![false; workers],
            by_url: (0..n_urls).map(|_| Latencies::default()).collect(),
            url_of,
            done: vec![0; messages as usize],
            last_at: vec![0; messages as usize],
            ..Reports::default()
        }
    }

    /// Takes in one line from worker `w`.
    pub fn on_line(&mut self, w: usize, line: &str) -> Result<(), String> {
        let mut it = line.split(' ');
        let num = |s: Option<&str>| {
            s.and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("bad worker line {line:?}"))
        };
        match it.next() {
            Some("held") => {
                self.held[w] = Some((num(it.next())?, num(it.next())?, num(it.next())?))
            }
            Some("done") => {
                let (seq, at) = (num(it.next())? as usize, num(it.next())?);
                if seq < self.done.len() {
                    self.done[seq] += 1;
                    self.last_at[seq] = self.last_at[seq].max(at);
                }
            }
            Some("hist") => {
                let (name, pairs) = line["hist ".len()..]
                    .split_once(' ')
                    .unwrap_or((&line["hist ".len()..], ""));
                let h = match name {
                    "connect" => &mut self.connect,
                    "fanout" => {
                        self.by_url[self.url_of[w]].merge_encoded(pairs)?;
                        &mut self.fanout
                    }
                    "open" => &mut self.open,
                    _ => return Err(format!("unknown histogram {name}")),
                };
                h.merge_encoded(pairs)?;
            }
            Some("counts") => {
                for c in self.counts.iter_mut() {
                    *c += num(it.next())?;
                }
            }
            Some("end") => self.finished[w] = true,
            _ => return Err(format!("bad worker line {line:?}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_worker_lines() {
        let mut r = Reports::new(vec![0, 1], 2, 3);
        for (w, line) in [
            (0, "held 10 1 5000"),
            (1, "held 9 0 7000"),
            (0, "done 1 100"),
            (1, "done 1 90"),
            (0, "hist fanout 1000:3 2000:1"),
            (1, "hist fanout 1000:2"),
            (0, "counts 30 0 0 0 0 0"),
            (1, "counts 27 1 2 0 0 1"),
            (1, "end"),
        ] {
            r.on_line(w, line).unwrap();
        }
        assert_eq!(r.held, [Some((10, 1, 5000)), Some((9, 0, 7000))]);
        assert_eq!((r.done[1], r.last_at[1]), (2, 100));
        assert_eq!(r.fanout.len(), 6);
        assert_eq!((r.by_url[0].len(), r.by_url[1].len()), (4, 2));
        assert_eq!(r.counts, [57, 1, 2, 0, 0, 1]);
        assert_eq!(r.finished, [false, true]);
        assert!(r.on_line(0, "done x").is_err());
        assert!(r.on_line(0, "hist nope 1:1").is_err());
    }
}
