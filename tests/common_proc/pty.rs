//! Programs on a real terminal, for tests: a pseudo-terminal pair (`openpty`), the program
//! started as a session leader with the pty's slave as its controlling terminal and its stdin,
//! stdout and stderr; reads with a bound, keys written as bytes.
//!
//! Nothing hangs and nothing stays: every read waits at most the bound it is given, and a
//! [`Pty`] dropped before its program was reaped (a failing test unwinding) kills the program's
//! whole process group (the actor tree shares it) and reaps the program.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A program running on its own terminal.
pub struct Pty {
    master: OwnedFd,
    child: Option<Child>,
    pid: u32,
    /// Everything the program wrote so far.
    seen: Vec<u8>,
    /// How much of `seen` the `expect`s have consumed.
    pos: usize,
    /// The slave side is closed everywhere (the read end gave `EIO` or end-of-file).
    eof: bool,
}

/// Serializes pty creation and spawning: a slave end inherited by another test's program would
/// keep this one's terminal open after its program ended.
static SPAWN: Mutex<()> = Mutex::new(());

fn cloexec(fd: i32) {
    // SAFETY: `fcntl(F_SETFD)` on a descriptor we own takes integers only.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

impl Pty {
    /// Starts `program` on a new terminal (80x24), as a session leader whose controlling
    /// terminal it is (`with_terminal`), or on the same pty as a session leader without a
    /// controlling terminal (`/dev/tty` does not open there).
    pub fn spawn(program: &Path, with_terminal: bool) -> io::Result<Pty> {
        let _serial = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid out-pointers for the two descriptors; no name buffer; default termios.
        let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        cloexec(master);
        cloexec(slave);
        // SAFETY: `openpty` just returned both descriptors; nothing else owns them.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?))
            .env_remove("INFECT_ACTOR_PIPE");
        // SAFETY: only async-signal-safe calls between fork and exec: `setsid`, `ioctl`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if with_terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(slave);
        let pid = child.id();
        Ok(Pty { master, child: Some(child), pid, seen: Vec::new(), pos: 0, eof: false })
    }

    /// The program's pid (also its process group's and its session's id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the program wrote so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Reads what the program wrote within `until`; `false` once nothing more can come.
    fn fill(&mut self, until: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid `pollfd`.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            return !left.is_zero();
        }
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is writable for its length; the master is open.
        let got = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match got {
            n if n > 0 => self.seen.extend_from_slice(&buf[..n as usize]),
            // EIO: every slave descriptor is closed (the tree is gone).
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => self.eof = true,
        }
        true
    }

    /// Waits (at most `within`) until `needle` appears in the output after what earlier
    /// `expect`s consumed; returns the text up to and including it, and consumes it.
    pub fn expect(&mut self, needle: &str, within: Duration) -> Result<String, String> {
        let until = Instant::now() + within;
        loop {
            let rest = &self.seen[self.pos..];
            if let Some(i) = rest.windows(needle.len().max(1)).position(|w| w == needle.as_bytes()) {
                let end = self.pos + i + needle.len();
                let text = String::from_utf8_lossy(&self.seen[self.pos..end]).into_owned();
                self.pos = end;
                return Ok(text);
            }
            if Instant::now() >= until || !self.fill(until) {
                return Err(format!(
                    "did not see {needle:?} within {within:?}; after {:?} came {:?}",
                    String::from_utf8_lossy(&self.seen[..self.pos]),
                    String::from_utf8_lossy(&self.seen[self.pos..])
                ));
            }
        }
    }

    /// Types `keys` (bytes as they are: `"\r"` is Enter, `"\x03"` Ctrl-C).
    pub fn send(&mut self, keys: &str) {
        let mut left = keys.as_bytes();
        while !left.is_empty() {
            // SAFETY: `left` is valid for its length; the master is open.
            let n = unsafe { libc::write(self.master.as_raw_fd(), left.as_ptr().cast(), left.len()) };
            if n <= 0 {
                return;
            }
            left = &left[n as usize..];
        }
    }

    /// Waits (at most `within`) for the program to end: reads its output to the end, reaps it,
    /// and returns its status and the output not consumed yet.
    pub fn finish(&mut self, within: Duration) -> Result<(ExitStatus, String), String> {
        let until = Instant::now() + within;
        while !self.eof && Instant::now() < until {
            self.fill(until);
        }
        let child = self.child.as_mut().ok_or("reaped already")?;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    let rest = String::from_utf8_lossy(&self.seen[self.pos..]).into_owned();
                    self.pos = self.seen.len();
                    return Ok((st, rest));
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => return Err(format!("still running after {within:?}; output {:?}", self.output())),
                Err(e) => return Err(format!("wait: {e}")),
            }
        }
    }
}

/// The exit code of `st`, or `128 + signal` for a program killed by a signal.
pub fn code(st: &ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// The processes (pid, state) of session `sid` still present, zombies included.
pub fn session_members(sid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() > 3 && f[3].parse::<u32>().ok() == Some(sid) {
            out.push((pid, f[0].chars().next().unwrap_or('?')));
        }
    }
    out.sort_unstable();
    out
}

/// Waits (at most `within`) until no process of session `sid` is left; the ones left if any.
pub fn left_behind(sid: u32, within: Duration) -> Vec<(u32, char)> {
    let until = Instant::now() + within;
    loop {
        let left = session_members(sid);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: `kill` takes no pointers; the group is our program's (not reaped yet, so
            // its pid, and with it the group id, is not reused).
            unsafe {
                libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
