//! The few system calls std and mio do not wrap: binding a client socket to a chosen loopback
//! source address before connecting, the shared monotonic clock, and the descriptor limit.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;

/// CLOCK_MONOTONIC in nanoseconds. Every process on the machine reads the same clock, so a
/// timestamp written by the publisher can be subtracted in a worker process.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Starts a non-blocking connect from `src` (port chosen at connect time) to `dst`.
/// IP_BIND_ADDRESS_NO_PORT matters: without it bind() picks a port before knowing the
/// destination, and a source address runs out of ports far sooner.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = mio::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let r = libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of_val(&one) as libc::socklen_t,
        );
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let src = sockaddr(src, 0);
        if libc::bind(
            fd,
            &src as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&src) as _,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let dst = sockaddr(*dst.ip(), dst.port());
        if libc::connect(
            fd,
            &dst as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&dst) as _,
        ) < 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(stream)
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Reads a line-oriented pipe (a worker's stdout) without blocking, keeping a partial last line.
#[derive(Default)]
pub struct LineReader {
    buf: Vec<u8>,
    pub eof: bool,
}

impl LineReader {
    /// Reads what is available and calls `on_line` for each complete line.
    pub fn read_from(
        &mut self,
        src: &mut impl io::Read,
        on_line: &mut impl FnMut(&str),
    ) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match src.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            on_line(std::str::from_utf8(&self.buf[start..start + nl]).unwrap_or(""));
            start += nl + 1;
        }
        self.buf.drain(..start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reader_keeps_partial_lines() {
        let mut r = LineReader::default();
        let mut lines = Vec::new();
        r.read_from(&mut &b"a 1\nb 2\nc"[..], &mut |l| lines.push(l.to_string()))
            .unwrap();
        r.read_from(&mut &b" 3\n"[..], &mut |l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(lines, ["a 1", "b 2", "c 3"]);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        assert!(now_ns() >= a);
    }
}
