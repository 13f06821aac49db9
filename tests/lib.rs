//! Helpers for the end-to-end tests: find and run the real `igrelay` binary.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `igrelay` binary built by `cargo build` (deploy/local/test.sh builds it before the tests),
/// or `$IGRELAY_BIN`.
pub fn igrelay_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("IGRELAY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/igrelay");
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p igrelay` (deploy/local/test.sh does)",
        bin.display()
    );
    Ok(bin)
}

/// A running igrelay process whose stdout and stderr (logs) lines are collected; killed on
/// drop. Log lines are also copied to the test's stderr.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    logs: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `igrelay <args>` with `env` added to the environment.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(igrelay_bin()?);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let (tx, logs) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = writeln!(std::io::stderr(), "{line}");
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Self { child, lines, logs })
    }

    /// The next stderr (log) line containing `needle`, waiting at most `timeout`.
    pub fn log_containing(&self, needle: &str, timeout: Duration) -> Option<String> {
        next_containing(&self.logs, needle, timeout)
    }

    /// The process's exit code once it exits on its own, waiting at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("igrelay did not exit within {timeout:?}")
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.child.id());
        Ok(())
    }

    /// The next stdout line containing `needle`, waiting at most `timeout`.
    pub fn line_containing(&self, needle: &str, timeout: Duration) -> Option<String> {
        next_containing(&self.lines, needle, timeout)
    }

    /// Sends SIGTERM and waits (bounded) for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("igrelay did not exit within {timeout:?} of SIGTERM")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_containing(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// The address a service logged it listens on: the `addr` field of its JSON log line whose
/// message is `message` (e.g. "ingest listening"), so a test can bind port 0 and read the port
/// back instead of picking a port that someone else may take meanwhile.
pub fn logged_addr(line: &str) -> Option<std::net::SocketAddr> {
    logged_field(line, "addr")
}

/// A socket address logged in JSON field `field` (e.g. `ops_addr`).
pub fn logged_field(line: &str, field: &str) -> Option<std::net::SocketAddr> {
    let key = format!("\"{field}\":\"");
    let at = line.find(&key)? + key.len();
    line[at..].split('"').next()?.parse().ok()
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
