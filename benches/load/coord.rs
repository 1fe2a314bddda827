//! The coordinator's event loop for the `sse` mode: the pipes its worker processes report on
//! and the publisher connections, polled together so a phase of the run can be written as a plain
//! sequence of "publish, then wait until ..." steps.

use std::io::Write;
use std::time::Duration;

use mio::{Events, Poll};

use crate::client::Conn;
use crate::net::now_ns;
use crate::procs::{Reports, Worker};
use crate::sse::write_payload;

pub const SEC: u64 = 1_000_000_000;
/// Worker pipes get tokens from here up; publisher connections below.
pub const WORKER_TOKENS: usize = 1 << 20;

/// Everything the event loop touches, in one place so phases can be written as plain sequences.
pub struct Run {
    pub poll: Poll,
    pub events: Events,
    pub workers: Vec<Worker>,
    pub reports: Reports,
    pub pubs: Vec<Conn>,
    pub pub_addr: std::net::SocketAddr,
    pub n_pubs: usize,
    pub pub_path: String,
    pub pub_host: String,
    pub size: usize,
    pub sent_at: Vec<u64>,
    /// POSTs answered with a 2xx, and otherwise.
    pub accepted: u64,
    pub rejected: u64,
    pub buf: Vec<u8>,
}

impl Run {
    /// Waits for events until `deadline` (at most 100 ms) and takes them in.
    pub fn turn(&mut self, deadline: u64) -> Result<(), String> {
        let wait = deadline.saturating_sub(now_ns()).min(SEC / 10);
        self.poll
            .poll(&mut self.events, Some(Duration::from_nanos(wait)))
            .map_err(|e| e.to_string())?;
        for ev in self.events.iter() {
            let t = ev.token().0;
            if t >= WORKER_TOKENS {
                let w = t - WORKER_TOKENS;
                let (worker, reports) = (&mut self.workers[w], &mut self.reports);
                let mut bad = None;
                worker
                    .lines
                    .read_from(&mut worker.stdout, &mut |line| {
                        if let Err(e) = reports.on_line(w, line) {
                            bad = Some(e);
                        }
                    })
                    .map_err(|e| e.to_string())?;
                if let Some(e) = bad {
                    return Err(e);
                }
                if worker.lines.eof && !reports.finished[w] {
                    return Err(format!("worker {w} exited early"));
                }
            } else {
                match self.pubs[t].on_ready(&mut self.buf) {
                    Ok(Some(status)) if (200..300).contains(&status) => self.accepted += 1,
                    Ok(Some(status)) => {
                        log::warn!("publish answered {status}");
                        self.rejected += 1;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("{e} while publishing")),
                }
            }
        }
        Ok(())
    }

    /// Turns until `done` holds or `deadline` passes; says which.
    pub fn wait(&mut self, deadline: u64, done: impl Fn(&Run) -> bool) -> Result<bool, String> {
        while !done(self) {
            if now_ns() >= deadline {
                return Ok(false);
            }
            self.turn(deadline)?;
        }
        Ok(true)
    }

    pub fn publish(&mut self, conn: usize, seq: u64, sent_ns: u64) -> Result<(), String> {
        let (path, host, size) = (&self.pub_path, &self.pub_host, self.size);
        let c = &mut self.pubs[conn];
        let req = c.request_buf();
        let mut body = Vec::with_capacity(size.max(32));
        write_payload(&mut body, seq, sent_ns, size);
        write!(req, "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        req.extend_from_slice(&body);
        self.sent_at[seq as usize] = sent_ns;
        c.send(seq, now_ns())
            .map_err(|e| format!("{e} while publishing"))
    }

    pub fn all_done(&self, seq: u64) -> bool {
        self.reports.done[seq as usize] as usize == self.workers.len()
    }
}
