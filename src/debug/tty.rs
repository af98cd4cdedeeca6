//! The controlling terminal of [`pause`](super::pause): opened as `/dev/tty`, switched to raw
//! mode for the prompt and always restored.
//!
//! Invariants:
//! - **Restored on every way out.** [`Tty::raw`] saves the terminal's settings and returns a
//!   guard that puts them back when dropped: on a return, an error, or an unwinding panic.
//!   (`SIGKILL`, or a panic under `panic = "abort"`, leaves the terminal raw: `stty sane` fixes
//!   it.)
//! - **Ctrl-C is a byte.** Raw mode turns `ISIG` off, so the terminal driver sends no `SIGINT`
//!   (nor `SIGTSTP`/`SIGQUIT`) to the tree's process group: the prompt reads `^C` as `0x03`.
//!   Output processing (`OPOST`) stays on, so `\n` still starts a new line.
//! - Reads block the actor's thread (a Rust binary has no REPL of its own: the whole actor is
//!   paused while its prompt is open, like a Python actor in `pdb`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::IoError;
use crate::{Error, Result};

/// `/dev/tty`, open for reading and writing.
pub(crate) struct Tty {
    fd: OwnedFd,
}

/// Raw mode on a [`Tty`]; dropping it restores the settings saved when it was made.
pub(crate) struct Raw<'a> {
    tty: &'a Tty,
    saved: libc::termios,
}

impl Tty {
    /// Opens the controlling terminal; [`Error::NoTerminal`] if this process has none.
    pub(crate) fn open() -> Result<Tty> {
        let path = c"/dev/tty";
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY) };
        if fd < 0 {
            return Err(Error::NoTerminal { source: IoError::from(std::io::Error::last_os_error()) });
        }
        // SAFETY: `open` just returned this descriptor; nothing else owns it.
        Ok(Tty { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Switches the terminal to raw mode until the guard is dropped.
    pub(crate) fn raw(&self) -> Result<Raw<'_>> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: an all-zero `termios` is a valid value for `tcgetattr` to fill in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open; `saved` is a valid, writable `termios`.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(os("tcgetattr on /dev/tty"));
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL | libc::INLCR | libc::IGNCR);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `fd` is open; `raw` is a valid `termios`.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(os("tcsetattr on /dev/tty"));
        }
        Ok(Raw { tty: self, saved })
    }

    /// Writes all of `text` (best effort: a terminal that went away loses it).
    pub(crate) fn write(&self, text: &str) {
        let mut left = text.as_bytes();
        while !left.is_empty() {
            // SAFETY: `left` is a valid buffer of `left.len()` bytes; `fd` is open.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), left.as_ptr().cast(), left.len()) };
            match n {
                n if n > 0 => left = &left[n as usize..],
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    /// Reads one byte, blocking; `None` at end-of-file or on an error (the terminal is gone).
    pub(crate) fn read_byte(&self) -> Option<u8> {
        let mut b = 0u8;
        loop {
            // SAFETY: `b` is one writable byte; `fd` is open.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut b).cast(), 1) };
            match n {
                1 => return Some(b),
                0 => return None,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return None,
            }
        }
    }
}

impl Drop for Raw<'_> {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open (the guard borrows its `Tty`); `saved` is the valid
        // `termios` that `tcgetattr` filled in.
        unsafe {
            libc::tcsetattr(self.tty.fd.as_raw_fd(), libc::TCSANOW, &self.saved);
        }
    }
}

fn os(op: &str) -> Error {
    Error::Os { op: op.to_owned(), source: IoError::from(std::io::Error::last_os_error()) }
}
