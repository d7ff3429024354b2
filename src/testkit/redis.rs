//! A real `redis-server` for the cluster tests: each fixture runs its own on a free loopback
//! port with no persistence, so tests never share a Redis and never touch 6379. `stop` and
//! `restart` keep the port, so a test can take Redis away from running rturn nodes and give
//! the same address back.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a starting redis-server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed redis-server's port may keep accepting connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `restart` keeps trying while the old port is momentarily taken.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `command` waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
/// Fresh ports tried by `start` when redis-server exits at once (another process took it).
const START_ATTEMPTS: u32 = 3;

/// A redis-server child process on 127.0.0.1, killed when dropped.
pub struct Redis {
    port: u16,
    child: Option<Child>,
    /// The server's working directory (`--dir`) and `redis.log`, its stdout and stderr.
    dir: tempfile::TempDir,
}

/// Why a redis-server did not come up on the port asked for.
enum StartError {
    /// It exited, or another server answers on the port: the port was taken.
    PortTaken(String),
}

impl Redis {
    /// Starts redis-server on a free loopback port and waits until it answers PING.
    ///
    /// Panics if `redis-server` is not installed or does not come up.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = super::net::free_port();
            match spawn_ready(port, dir.path()) {
                Ok(child) => {
                    return Redis {
                        port,
                        child: Some(child),
                        dir,
                    };
                }
                Err(StartError::PortTaken(why)) => last = why,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} ports: {last}");
    }

    /// `redis://127.0.0.1:<port>`, for rturn's config.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on, the same across `stop` and `restart`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills redis-server (SIGKILL: no shutdown, no goodbye to clients) and returns once its
    /// port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error here means it has already exited, which is what we want.
            let _ = child.kill();
            child.wait().expect("wait for the killed redis-server");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while connect(self.port, POLL).is_ok() {
            assert!(
                Instant::now() < deadline,
                "127.0.0.1:{} still accepts connections {STOP_TIMEOUT:?} after redis-server was killed",
                self.port
            );
            sleep(POLL);
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) redis-server: connections stay open and
    /// commands go unanswered, as with a Redis that hangs.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("redis-server is running");
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal redis-server");
    }

    /// Starts redis-server again on the same port (stopping it first if it runs), with an
    /// empty dataset, and waits until it answers PING.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match spawn_ready(self.port, self.dir.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(StartError::PortTaken(why)) => {
                    assert!(
                        Instant::now() < deadline,
                        "redis-server could not restart on 127.0.0.1:{} within {REBIND_TIMEOUT:?}: {why}",
                        self.port
                    );
                    sleep(POLL);
                }
            }
        }
    }

    /// Sends one command and returns its whole reply as raw RESP with the final CRLF cut:
    /// `+OK`, `:3`, `$-1`, `-ERR …`, a bulk string as `$1\r\nv`, an array as
    /// `*2\r\n$7\r\nrturn:a\r\n$7\r\nrturn:b`. Panics if Redis does not answer in 5 s.
    pub fn command(&self, args: &[&str]) -> String {
        request(self.port, args).unwrap_or_else(|e| {
            panic!(
                "redis command {args:?} to 127.0.0.1:{}: {e}; redis.log:\n{}",
                self.port,
                log(self.dir.path())
            )
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns redis-server on `port` and waits until it, and not some other server that took
/// the port, answers PING.
fn spawn_ready(port: u16, dir: &Path) -> Result<Child, StartError> {
    let log_path = dir.join("redis.log");
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open redis.log in the temp dir");
    let stderr = log_file.try_clone().expect("clone the redis.log handle");
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--protected-mode", "yes", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("redis-server not found; scripts/test.sh installs Debian's redis-server")
        }
        Err(e) => panic!("spawn redis-server: {e}"),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll the redis-server child") {
            return Err(StartError::PortTaken(format!(
                "redis-server on port {port} exited with {status}; redis.log:\n{}",
                log(dir)
            )));
        }
        if ping(port) {
            // Another redis may have won the race for the port and answered for ours.
            let info = request(port, &["INFO", "server"]).unwrap_or_default();
            if info.contains(&format!("process_id:{}\r\n", child.id())) {
                return Ok(child);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::PortTaken(format!(
                "another server answers on port {port}"
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}; redis.log:\n{}",
                log(dir)
            );
        }
        sleep(POLL);
    }
}

fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}

/// Whether something on `port` answers an inline `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut stream = connect(port, POLL)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line == "+PONG\r\n")
    };
    attempt().unwrap_or(false)
}

/// Sends `args` as a RESP array of bulk strings and reads one whole reply.
fn request(port: u16, args: &[&str]) -> io::Result<String> {
    let mut stream = connect(port, REPLY_TIMEOUT)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut encoded = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        encoded.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        encoded.extend_from_slice(arg.as_bytes());
        encoded.extend_from_slice(b"\r\n");
    }
    stream.write_all(&encoded)?;
    let mut reply = String::new();
    read_reply(&mut BufReader::new(stream), &mut reply)?;
    reply.truncate(reply.len().saturating_sub(2));
    Ok(reply)
}

/// Appends one RESP2 reply, raw, to `out`: a line, plus a bulk body or an array's elements.
fn read_reply(reader: &mut impl BufRead, out: &mut String) -> io::Result<()> {
    let start = out.len();
    if reader.read_line(out)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let line = out[start..].trim_end().to_owned();
    let count = || -> io::Result<i64> {
        line[1..]
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}")))
    };
    match line.as_bytes().first() {
        Some(b'$') => {
            if let Ok(len) = usize::try_from(count()?) {
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body)?;
                out.push_str(&String::from_utf8_lossy(&body));
            }
        }
        Some(b'*') => {
            for _ in 0..count()?.max(0) {
                read_reply(reader, out)?;
            }
        }
        Some(b'+' | b'-' | b':') => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown reply {line:?}"),
            ));
        }
    }
    Ok(())
}

/// The redis-server log so far, for panic messages.
fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}
