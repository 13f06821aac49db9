//! A local nats-server child process, for `igrelay dev`, benchmarks and tests.
//!
//! The binary comes from the project's own set-up (`deploy/local/setup.sh` installs a pinned
//! version into `.tools/bin`), never from a server someone started by hand.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The nats-server version `deploy/local/setup.sh` installs.
pub const PINNED_VERSION: &str = "2.14.2";

/// Why a local server could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalServerError {
    #[error(
        "nats-server not found (looked at $IGRELAY_NATS_SERVER, {0} and $PATH); run deploy/local/setup.sh to install the pinned version"
    )]
    NotFound(String),
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("nats-server did not become ready within {0:?}; its last output: {1}")]
    NotReady(Duration, String),
    #[error("cannot create a store directory: {0}")]
    Store(std::io::Error),
    #[error("cannot write the server's configuration file: {0}")]
    Config(std::io::Error),
}

/// Finds the nats-server binary: `$IGRELAY_NATS_SERVER`, then `<repo>/.tools/bin/nats-server`,
/// then `nats-server` on `$PATH`.
pub fn find_binary() -> Result<PathBuf, LocalServerError> {
    if let Some(p) = std::env::var_os("IGRELAY_NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let tools = repo_root().join(".tools/bin/nats-server");
    if tools.is_file() {
        return Ok(tools);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(LocalServerError::NotFound(tools.display().to_string()))
}

/// The repository root: `$IGRELAY_ROOT`, else the working directory's nearest ancestor holding
/// `.tools`, else where this crate was built from.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("IGRELAY_ROOT") {
        return PathBuf::from(p);
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(dir) = cwd.ancestors().find(|d| d.join(".tools").is_dir())
    {
        return dir.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running nats-server with JetStream, on loopback, with its own store directory.
#[derive(Debug)]
pub struct LocalNatsServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// Removed on drop when we created it.
    owned_store: Option<PathBuf>,
    /// Further nats-server arguments (auth, a config file: `--user u --pass p`, `-c file`).
    extra_args: Vec<String>,
}

impl LocalNatsServer {
    /// Starts a server on a free port with a fresh temporary store.
    pub fn start() -> Result<Self, LocalServerError> {
        Self::start_with_args(&[])
    }

    /// Like [`start`](Self::start) with further nats-server arguments, e.g.
    /// `["--user", "u", "--pass", "p"]`, `["--auth", "token"]` or `["--tls", …]`.
    pub fn start_with_args(args: &[&str]) -> Result<Self, LocalServerError> {
        let store = std::env::temp_dir().join(format!("igrelay-nats-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&store).map_err(LocalServerError::Store)?;
        let mut server = Self {
            bin: find_binary()?,
            child: None,
            port: 0,
            store: store.clone(),
            owned_store: Some(store),
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server on `port` (0 = any) keeping its store in `store`, which survives.
    pub fn start_with(port: u16, store: PathBuf) -> Result<Self, LocalServerError> {
        std::fs::create_dir_all(&store).map_err(LocalServerError::Store)?;
        let mut server =
            Self { bin: find_binary()?, child: None, port, store, owned_store: None, extra_args: Vec::new() };
        server.spawn()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), LocalServerError> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), LocalServerError> {
        let port = if self.port == 0 { "-1".to_string() } else { self.port.to_string() };
        // By default nats-server lets JetStream reserve at most 75% of the free disk, and the
        // streams reserve their max_bytes (10 GiB for events): on a fuller disk every stream
        // creation fails with "insufficient storage resources". A local server's streams never
        // come near their limits, so the limit is lifted.
        let conf = self.store.join("igrelay-local.conf");
        std::fs::write(&conf, "jetstream {\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}\n")
            .map_err(LocalServerError::Config)?;
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-c"])
            .arg(&conf)
            .arg("-sd")
            .arg(&self.store)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LocalServerError::Spawn { bin: self.bin.display().to_string(), source })?;
        let stderr = child.stderr.take();
        self.child = Some(child);
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(stderr) = stderr {
            // Keep reading for the server's whole life so a full pipe never blocks it.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Duration::from_secs(15);
        let started = std::time::Instant::now();
        let mut last = String::new();
        while started.elapsed() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = line.split("Listening for client connections on ").nth(1)
                        && let Some(p) = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                    {
                        self.port = p;
                    }
                    if line.contains("Server is ready") {
                        return Ok(());
                    }
                    last = line;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.kill();
        Err(LocalServerError::NotReady(deadline, last))
    }
}

impl Drop for LocalNatsServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(store) = &self.owned_store {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (u64::from(nanos) << 16) ^ N.fetch_add(1, Ordering::Relaxed)
}
