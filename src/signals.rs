//! SIGTERM and SIGINT as readiness events, by the self-pipe trick: the signal
//! handler writes one byte into a non-blocking pipe whose read end is
//! registered with the poll, so shutdown is handled on the loop like any other
//! event and the handler itself does nothing but an async-signal-safe write().

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte,
    // which is fine because one pending byte already wakes the loop.
    unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
}

/// The read end of the self-pipe.
pub struct SignalPipe {
    read_fd: RawFd,
}

impl SignalPipe {
    /// Installs handlers for SIGTERM and SIGINT. Call once per process.
    pub fn install() -> io::Result<SignalPipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WRITE_FD.store(fds[1], Ordering::Relaxed);
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: the handler only performs an async-signal-safe write.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(SignalPipe { read_fd: fds[0] })
    }

    /// Empties the pipe; returns how many signals had arrived (each wrote
    /// one byte), so two that come in one wake-up still count as two.
    pub fn drain(&self) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        loop {
            // SAFETY: reading into a local buffer from our own non-blocking pipe.
            let got = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return n;
            }
            n += got as usize;
        }
    }
}

impl Source for SignalPipe {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.read_fd).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.read_fd).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.read_fd).deregister(registry)
    }
}
