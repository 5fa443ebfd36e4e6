//! A real `redis-server` for tests: started on a free loopback port with a
//! temporary directory and no persistence, stopped (killed) on drop. Tests
//! that need one call [`RedisServer::start`]; without a `redis-server` on
//! `PATH` it fails and says how to install one (`.ci/run` does).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Start one and wait until it answers.
    pub fn start() -> Result<RedisServer, String> {
        RedisServer::start_inner(None)
    }

    /// Start one that asks for `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Result<RedisServer, String> {
        RedisServer::start_inner(Some(password.to_string()))
    }

    fn start_inner(password: Option<String>) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            password,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run `redis-server` ({e}): install it (`apt-get install redis-server`; `.ci/run` does)")
            })?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server did not answer on port {} within 10 s",
            self.port
        ))
    }

    /// Whether it answers `PING` now.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if let Some(p) = &self.password {
            let mut ok = [0u8; 5];
            if s.write_all(format!("AUTH {p}\r\n").as_bytes()).is_err()
                || s.read_exact(&mut ok).is_err()
                || &ok != b"+OK\r\n"
            {
                return false;
            }
        }
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// `redis://[:password@]127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Freeze it (SIGSTOP): connections stay open and nothing answers, as
    /// with a server that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaw it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stop it (SIGKILL: an outage, not a shutdown); the port stays reserved
    /// for [`RedisServer::restart`] as far as the OS allows.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
