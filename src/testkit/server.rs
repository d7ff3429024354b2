//! [`Server`]: the built `rturn` binary started on a config with port 0 everywhere; the
//! addresses it bound are read from its log, so no test needs a fixed port or a sleep. Also
//! the `/metrics` scrape and the config helpers (loopback listeners, a self-signed
//! certificate).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long anything in a test may take before it counts as hung.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running rturn process, killed when dropped.
pub struct Server {
    child: Child,
    /// The UDP listeners it bound, in log order.
    pub udp: Vec<SocketAddr>,
    /// The TCP listeners it bound.
    pub tcp: Vec<SocketAddr>,
    /// The TLS listeners it bound.
    pub tls: Vec<SocketAddr>,
    /// The HTTPS listener (`listen.https`), when configured.
    pub https: Option<SocketAddr>,
    /// The plain HTTP listener (`listen.http`: /ws, /api, /metrics), when configured.
    pub http: Option<SocketAddr>,
    /// The config file it runs on (tests may rewrite it and send SIGHUP).
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

/// A config listening on loopback port 0 for UDP and TCP; `extra` is appended verbatim.
pub fn loopback_config(extra: &str) -> String {
    format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n{extra}"
    )
}

/// Writes `config` to a temporary file. With `RTURN_TEST_OFFLOAD=off` in the environment
/// (`scripts/test.sh` runs the TURN and browser tests a second time so), a config that does
/// not choose `[relay] offload` itself gets `offload = "off"`: the same tests then run
/// without the kernel fast path.
pub fn write_config(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("turnserver.toml");
    let forced = std::env::var("RTURN_TEST_OFFLOAD").ok();
    let config = match forced.as_deref() {
        Some(mode) if !config.contains("offload =") => with_offload(config, mode),
        _ => config.to_owned(),
    };
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// `config` with `[relay] offload = mode` added (to its `[relay]` table, or a new one).
fn with_offload(config: &str, mode: &str) -> String {
    let key = format!("offload = \"{mode}\"\n");
    match config.find("[relay]\n") {
        Some(at) => {
            let end = at + "[relay]\n".len();
            format!("{}{key}{}", &config[..end], &config[end..])
        }
        None => format!("{config}\n[relay]\n{key}"),
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made now, written as PEM files
/// into `dir`; returns the `[tls]` config section pointing at them.
pub fn test_certificate(dir: &std::path::Path) -> String {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).expect("certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    )
}

/// A TLS client config trusting only the certificate [`test_certificate`] wrote into `dir`.
pub fn test_tls_client(dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).expect("cert.pem") {
        roots
            .add(cert.expect("a certificate"))
            .expect("a usable certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The rturn binary under test: `CARGO_BIN_EXE_rturn` when set, else `rturn` in the target
/// directory the running test binary was built into (`target/<profile>/deps/<test>-<hash>`
/// next to `target/<profile>/rturn`; cargo builds the binary before any integration test).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_rturn") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe.parent().expect("the test binary's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the profile directory");
    }
    let path = dir.join(format!("rturn{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "no rturn binary at {}", path.display());
    path
}

/// A command running the rturn binary under test.
pub fn rturn() -> Command {
    Command::new(binary())
}

impl Server {
    /// Starts rturn with `config` and waits until it reports ready.
    pub fn start(config: &str) -> Server {
        let (dir, path) = write_config(config);
        Server::start_file(dir, &path)
    }

    /// Starts rturn on the config file at `path` (kept alive by `dir`), so a test can change
    /// the file and send SIGHUP.
    pub fn start_file(dir: tempfile::TempDir, path: &std::path::Path) -> Server {
        Server::start_command(rturn(), dir, path)
    }

    /// Starts rturn with `config` under a descriptor limit of `nofile` (soft and hard), with
    /// util-linux's `prlimit`, which then becomes rturn (same process).
    pub fn start_with_nofile(config: &str, nofile: u32) -> Server {
        let (dir, path) = write_config(config);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(binary());
        Server::start_command(command, dir, &path)
    }

    /// Starts rturn with `config` inside the network namespace `netns` (made with
    /// `ip netns add`), through `ip netns exec`, which then becomes rturn (same process).
    /// The addresses it reports are that namespace's.
    pub fn start_in_netns(netns: &str, config: &str) -> Server {
        let (dir, path) = write_config(config);
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(binary());
        Server::start_command(command, dir, &path)
    }

    /// Starts `command` (rturn, or something that becomes rturn) with `-c path`.
    fn start_command(
        mut command: Command,
        dir: tempfile::TempDir,
        path: &std::path::Path,
    ) -> Server {
        let mut child = command
            .arg("-c")
            .arg(path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rturn");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            https: None,
            http: None,
            config_path: path.to_owned(),
            log,
            lines,
            _dir: dir,
        };
        loop {
            let line = server.wait_line(|_| true);
            if let Some(addr) = bound(&line, "udp") {
                server.udp.push(addr);
            } else if let Some(addr) = bound(&line, "tcp") {
                server.tcp.push(addr);
            } else if let Some(addr) = bound(&line, "tls") {
                server.tls.push(addr);
            } else if let Some(addr) = bound(&line, "https") {
                server.https = Some(addr);
            } else if let Some(addr) = bound(&line, "http") {
                server.http = Some(addr);
            } else if line.contains(" ready") {
                // " ready", not "ready": a failed bind's "Address already in use" is no start.
                return server;
            }
        }
    }

    /// Waits for the next log line matching `pred`; panics after [`TIMEOUT`] or on exit.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("timed out; log:\n{}", self.log()),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("rturn exited; log:\n{}", self.log())
                }
            }
        }
    }

    /// Everything rturn has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// The process ID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`TIMEOUT`]) for rturn to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rturn did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "rturn ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The plain HTTP listener's address; panics when the config has no `listen.http`.
    pub fn http_addr(&self) -> SocketAddr {
        (self.http).unwrap_or_else(|| panic!("no listen.http in the log:\n{}", self.log()))
    }

    /// One scrape of `/metrics` on the HTTP listener.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        scrape(self.http_addr())
    }

    /// The value of the `/metrics` sample `name` (labels included, as printed), 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        sample(&self.metrics(), name)
    }
}

/// GET `path` over plain HTTP/1.1; the body of a 200, or panics.
pub fn http_body(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("http connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("http request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("http response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET {path}: {response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    body.to_owned()
}

/// One scrape of `/metrics` at `http`: every sample as (name with labels, value).
pub fn scrape(http: SocketAddr) -> Vec<(String, f64)> {
    (http_body(http, "/metrics").lines())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of sample `name` (with its labels, as printed), 0 if absent: counters keyed by
/// a label value appear only once they moved.
pub fn sample(samples: &[(String, f64)], name: &str) -> f64 {
    samples.iter().find(|(n, _)| n == name).map_or(0.0, |s| s.1)
}

/// Polls `/metrics` until `done` holds, for at most `limit`.
pub fn wait_metrics(
    http: SocketAddr,
    limit: Duration,
    what: &str,
    done: impl Fn(&[(String, f64)]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let m = scrape(http);
        if done(&m) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; metrics: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bound(line: &str, proto: &str) -> Option<SocketAddr> {
    let rest = line.split(&format!("listening on {proto} ")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
