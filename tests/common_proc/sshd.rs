//! A real sshd on loopback for the launcher tests and bench (`tests/launch.rs`,
//! `benches/launch.rs`).
//!
//! [`ssh`] returns the ssh launcher prefix to use, in this order:
//! 1. `INFECT_TEST_SSH` (set by `.ci/run`, which starts an sshd of its own): its words, split at
//!    white space;
//! 2. otherwise, when an `sshd` binary exists (`/usr/sbin/sshd`, or one on `PATH`): a private
//!    sshd started here on a free `127.0.0.1` port, with a throwaway host key and user key in a
//!    temporary directory. It is a daemon of its own (not a child of the test, so the "no child
//!    left behind" checks do not see it), watched by a small shell that kills it as soon as this
//!    process's end of a pipe closes: when the test exits, however it exits;
//! 3. otherwise `Err(reason)`: the caller skips the ssh cases with that reason printed.
//!
//! Call it first thing in `main`, before the test makes itself a child subreaper (the watcher
//! and the daemon must not be re-parented to it).
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable `.ci/run` sets: the full ssh launcher prefix.
pub const SSH_ENV: &str = "INFECT_TEST_SSH";

/// An ssh launcher to a loopback sshd.
#[derive(Debug)]
pub struct Ssh {
    /// The launcher prefix: `ssh <options> user@127.0.0.1`.
    pub launcher: Vec<String>,
    /// Where it came from (for the test's output).
    pub origin: String,
    /// The private sshd's watcher: dropping it (or exiting) stops the daemon.
    _watch: Option<ChildStdin>,
}

impl Ssh {
    /// The launcher with the identity (`-i KEY`) replaced by `key`, and no other key tried:
    /// a client the server does not know.
    pub fn with_key(&self, key: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut words = self.launcher.iter();
        while let Some(w) = words.next() {
            if w == "-i" {
                words.next();
                continue;
            }
            out.push(w.clone());
        }
        let dest = out.pop().unwrap_or_default();
        out.extend(["-i".into(), key.display().to_string(), "-o".into(), "IdentitiesOnly=yes".into(), dest]);
        out
    }
}

/// The ssh launcher to use, or why there is none (see the module docs).
pub fn ssh() -> Result<Ssh, String> {
    if let Ok(words) = std::env::var(SSH_ENV) {
        let launcher: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        if launcher.is_empty() {
            return Err(format!("{SSH_ENV} is set but empty"));
        }
        return Ok(Ssh { launcher, origin: format!("{SSH_ENV} (from .ci/run)"), _watch: None });
    }
    let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| which("sshd"))
        .ok_or_else(|| "no sshd binary here (install openssh-server, or set INFECT_TEST_SSH)".to_owned())?;
    for tool in ["ssh", "ssh-keygen"] {
        which(tool).ok_or_else(|| format!("no {tool} binary here"))?;
    }
    start_private(&sshd)
}

/// A fresh ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "infect-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.exists())
}

/// The user this process runs as.
fn user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_owned())
}

/// Starts a private sshd (see the module docs) and returns its launcher.
fn start_private(sshd: &Path) -> Result<Ssh, String> {
    let dir = std::env::temp_dir().join(format!("infect-test-sshd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (host_key, user_key) = (dir.join("host_key"), dir.join("user_key"));
    keygen(&host_key)?;
    keygen(&user_key)?;
    let authorized = dir.join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized).map_err(|e| format!("authorized_keys: {e}"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let config = dir.join("sshd_config");
    let text = format!(
        "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
         UsePAM no\nStrictModes no\nLogLevel ERROR\n",
        host_key.display(),
        authorized.display(),
        dir.join("sshd.pid").display(),
    );
    std::fs::write(&config, text).map_err(|e| format!("sshd_config: {e}"))?;
    // sshd (as root) insists on its privilege separation directory; a distribution's service
    // unit usually creates it.
    let _ = std::fs::create_dir_all("/run/sshd");
    // The watcher: runs sshd in the foreground (`-D`) in the background of a subshell, prints
    // its pid, and kills it (and removes the directory) once its stdin (our pipe, kept as fd 3)
    // reaches end-of-file. The outer shell exits at once, so neither is our child.
    let script = r#"exec 3<&0
( "$1" -D -f "$2" -E "$3" </dev/null >/dev/null 2>&1 & p=$!; echo "$p"; read -r _ <&3; kill "$p"; rm -rf "$4" ) &"#;
    let mut sh: Child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(sshd)
        .arg(&config)
        .arg(dir.join("sshd.log"))
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    let watch = sh.stdin.take();
    let mut line = String::new();
    let read = sh.stdout.take().map(|o| std::io::BufReader::new(o).read_line(&mut line));
    let _ = sh.wait();
    if !matches!(read, Some(Ok(n)) if n > 0) {
        return Err("the sshd watcher printed no pid".to_owned());
    }
    let launcher = vec![
        "ssh".to_owned(),
        "-T".to_owned(),
        "-F".to_owned(),
        "/dev/null".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-i".to_owned(),
        user_key.display().to_string(),
        "-o".to_owned(),
        "StrictHostKeyChecking=no".to_owned(),
        "-o".to_owned(),
        "UserKnownHostsFile=/dev/null".to_owned(),
        "-o".to_owned(),
        "BatchMode=yes".to_owned(),
        "-o".to_owned(),
        "LogLevel=ERROR".to_owned(),
        format!("{}@127.0.0.1", user()),
    ];
    // Ready once it accepts connections.
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            return Err(format!("the private sshd did not start listening on port {port}: {log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Ssh { launcher, origin: format!("a private sshd on 127.0.0.1:{port} (pid {})", line.trim()), _watch: watch })
}
