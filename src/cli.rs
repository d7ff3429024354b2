//! The command line: `rturn -c FILE [--check-config] [-v|-q]`, and the subcommands (`token`,
//! `credentials`, `import-coturn`, `probe`).

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use crate::config::DEFAULT_PATH;

/// STUN/TURN server and WebRTC signaling relay.
#[derive(Debug, Parser)]
#[command(name = "rturn", version, about)]
pub struct Cli {
    /// Configuration file [default: /etc/rturn/turnserver.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Load and validate the configuration, print what is wrong, and exit.
    #[arg(long)]
    pub check_config: bool,

    /// More log output (-v debug, -vv trace). Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only). Overrides RUST_LOG.
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,

    /// Log format on stderr: plain text, or one JSON object per line for log shippers.
    #[arg(long, value_enum, default_value = "plain", global = true)]
    pub log_format: LogFormat,

    /// What to do instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a signaling token (`EXPIRY:MAC`) for `/ws?token=...` (or `/skyrtc?token=...`)
    /// and `/api/ice-servers`, signed with `[signal] token-secret`.
    Token {
        /// Only valid in this room (connect with `/ws?token=...&room=ROOM`).
        #[arg(long)]
        room: Option<String>,
        /// Valid under `/ws/NAMESPACE` and `/skyrtc/NAMESPACE` (and only there); without it,
        /// under plain `/ws` and `/skyrtc`.
        #[arg(long, default_value = "")]
        namespace: String,
        /// How long the token is valid, e.g. "30m", "1h", "7d".
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Print TURN REST credentials (username and password) and a ready `iceServers` snippet.
    ///
    /// The secret they are signed with: the config file's first `[auth] static-auth-secret`
    /// (-c FILE, default /etc/rturn/turnserver.toml; its rest-separator too), unless
    /// `--secret` or the RTURN_SECRET environment variable gives one. `--secret -` reads it
    /// from the first line of stdin. A secret written on the command line is seen by `ps`
    /// and kept in the shell's history: prefer the file, stdin or the variable.
    Credentials {
        /// The `static-auth-secret` to sign with, or `-` to read it from stdin [default: the
        /// config file's]
        #[arg(
            long,
            env = "RTURN_SECRET",
            hide_env_values = true,
            value_name = "SECRET"
        )]
        secret: Option<String>,
        /// The user name inside the REST username ("EXPIRY:USER").
        #[arg(long)]
        user: Option<String>,
        /// How long the credentials are valid.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// TURN URL(s) for the snippet, e.g. "turn:turn.example.org:3478".
        #[arg(long = "url", default_value = "turn:localhost:3478")]
        urls: Vec<String>,
    },
    /// Convert a coturn turnserver.conf to an rturn turnserver.toml on stdout; every option
    /// that could not be converted is listed on stderr with the reason. Needs no config file.
    ImportCoturn {
        /// The coturn configuration file.
        file: PathBuf,
    },
    /// Check a running STUN/TURN server (rturn, coturn, ...) end to end and print a verdict.
    ///
    /// Steps: Binding over UDP, TCP and TLS; Allocate over UDP, TCP and TLS; two allocations
    /// relaying to each other both ways; a forbidden peer (169.254.169.254) refused with 403;
    /// /healthz and /api/ice-servers. Prints one line per step (ok, FAIL or skip, with the
    /// time and what was seen) and a verdict; exits non-zero if any step fails. Without URLs,
    /// probes the `[listen]` addresses of the config file (-c). Credentials: --user and
    /// --password, else the file's first [auth.users] entry, else TURN REST credentials
    /// minted from its static-auth-secret. The server's configuration needs no change.
    Probe {
        /// What to probe: stun:HOST:PORT, turn:HOST:PORT[?transport=udp|tcp],
        /// turns:HOST:PORT, http://HOST:PORT, https://HOST:PORT.
        #[arg(value_name = "URL")]
        urls: Vec<String>,
        /// The TURN username (with --password), instead of the config file's.
        #[arg(long, requires = "password")]
        user: Option<String>,
        /// The TURN password (with --user).
        #[arg(long, requires = "user")]
        password: Option<String>,
        /// Accept any TLS certificate (a self-signed one on a test server).
        #[arg(long)]
        insecure: bool,
        /// Trust the CA certificates in this PEM file instead of the system's.
        #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
        ca_file: Option<PathBuf>,
        /// The longest one step may take.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

impl Cli {
    /// The configuration file to read, and whether it was given explicitly.
    pub fn config_path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        }
    }

    /// The tracing filter: from -v/-q when given, else `RUST_LOG`, else `info`.
    pub fn log_filter(&self, rust_log: Option<&str>) -> String {
        let level = match (self.verbose, self.quiet) {
            (0, 0) => return rust_log.unwrap_or("info").to_owned(),
            (1, _) => "debug",
            (v, _) if v >= 2 => "trace",
            (_, 1) => "warn",
            _ => "error",
        };
        level.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rturn").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn config_flag_long_and_short() {
        assert_eq!(
            parse(&["-c", "a.toml"]).config_path().0,
            PathBuf::from("a.toml")
        );
        assert_eq!(
            parse(&["--config", "b.toml"]).config_path().0,
            PathBuf::from("b.toml")
        );
        let (path, explicit) = parse(&[]).config_path();
        assert_eq!(path, PathBuf::from(DEFAULT_PATH));
        assert!(!explicit);
    }

    #[test]
    fn token_subcommand_takes_config_anywhere() {
        let cli = parse(&["token", "--room", "demo", "--ttl", "30m", "-c", "x.toml"]);
        assert_eq!(cli.config_path().0, PathBuf::from("x.toml"));
        let Some(Command::Token {
            room,
            ttl,
            namespace,
        }) = cli.command
        else {
            panic!("not the token command");
        };
        assert_eq!(room.as_deref(), Some("demo"));
        assert_eq!(namespace, "", "plain /ws unless --namespace");
        assert_eq!(ttl, std::time::Duration::from_secs(1800));
        assert!(Cli::try_parse_from(["rturn", "token", "--ttl", "soon"]).is_err());
    }

    #[test]
    fn probe_takes_urls_and_credentials_in_pairs() {
        let cli = parse(&[
            "-c",
            "x.toml",
            "probe",
            "turn:h:1",
            "--user",
            "u",
            "--password",
            "p",
        ]);
        let Some(Command::Probe {
            urls,
            user,
            password,
            timeout,
            ..
        }) = cli.command
        else {
            panic!("not the probe command");
        };
        assert_eq!(urls, ["turn:h:1"]);
        assert_eq!(
            (user.as_deref(), password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(timeout, std::time::Duration::from_secs(3));
        assert!(Cli::try_parse_from(["rturn", "probe", "--user", "u"]).is_err());
        assert!(Cli::try_parse_from(["rturn", "probe", "--insecure", "--ca-file", "c"]).is_err());
    }

    #[test]
    fn verbosity_overrides_rust_log() {
        assert_eq!(parse(&[]).log_filter(None), "info");
        assert_eq!(parse(&[]).log_filter(Some("rturn=trace")), "rturn=trace");
        assert_eq!(parse(&["-v"]).log_filter(Some("error")), "debug");
        assert_eq!(parse(&["-vv"]).log_filter(None), "trace");
        assert_eq!(parse(&["-q"]).log_filter(None), "warn");
        assert_eq!(parse(&["-qq"]).log_filter(None), "error");
        assert!(Cli::try_parse_from(["rturn", "-v", "-q"]).is_err());
    }
}
