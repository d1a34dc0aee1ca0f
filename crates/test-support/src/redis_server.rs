//! A throwaway `redis-server` on a free loopback port, for tests and benchmarks.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] returns `None` (the caller
//! skips with a message), unless `CI` or `SPEEDUP_REQUIRE_REDIS` is set: then a missing
//! server is a failure, as it must be where `.ci/run` installed one.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after saying why) if none is installed and none
    /// is required.
    pub fn start() -> Option<Self> {
        let binary =
            std::env::var_os("REDIS_SERVER").map_or_else(|| PathBuf::from("redis-server"), PathBuf::from);
        let installed =
            Command::new(&binary).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        if !installed {
            let required =
                std::env::var_os("CI").is_some() || std::env::var_os("SPEEDUP_REQUIRE_REDIS").is_some();
            let why = format!(
                "{} is not installed (Debian: apt-get install redis-server; or set REDIS_SERVER)",
                binary.display()
            );
            assert!(!required, "{why}; CI requires it");
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let mut server = RedisServer { child: None, port: 0, binary, dir };
        for _attempt in 0..5 {
            server.port = free_port();
            if server.launch() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free loopback port (5 attempts)");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, for inspecting or tampering with what the caches wrote.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// Kills the server (SIGKILL: like a crash or a pulled cable).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it accepts connections but never answers, like a
    /// server stuck in a long command or a half-dead network path.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("running kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.launch() {
            assert!(Instant::now() < deadline, "redis-server did not restart on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts redis-server on `self.port` and waits until it answers; false if it exited.
    fn launch(&mut self) -> bool {
        let mut child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // port taken, most likely
            }
            let client = redis::Client::open(self.url()).unwrap();
            // Answering is not enough: another test's server may own the port. Ours has our pid.
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut conn)
            {
                if info.lines().any(|l| l.trim() == format!("process_id:{}", child.id())) {
                    self.child = Some(child);
                    return true;
                }
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
