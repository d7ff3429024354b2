//! The `rturn` binary: parse the command line, set up tracing, load the config, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use rturn::cli::{Cli, Command, LogFormat};
use rturn::signal::token;
use rturn::{Config, Control, Listeners};

/// jemalloc with its background thread, not glibc's malloc: memory freed after a burst goes
/// back to the system within seconds (dirty pages decay over 10 s, purged by the background
/// thread even while the server's own threads sleep). glibc keeps freed memory in per-thread
/// arenas when fragmentation pins the top of a heap (a flood of slow signaling readers once
/// left the process hundreds of MB larger for good), and `unsafe_code = "forbid"` rules out
/// calling `malloc_trim`. Shown by tests/signal/queues.rs, which measures RSS before, during
/// and after slow readers pin memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cli: &Cli) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log_filter(rust_log.as_deref()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Plain => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Credentials {
            secret,
            user,
            ttl,
            urls,
        }) => {
            let (secret, separator) = credentials_secret(cli, secret.as_deref())?;
            return print_credentials(&secret, separator, user.as_deref(), *ttl, urls);
        }
        Some(Command::ImportCoturn { file }) => return import_coturn(file),
        Some(Command::Probe {
            urls,
            user,
            password,
            insecure,
            ca_file,
            timeout,
        }) => {
            let options = rturn::probe::ProbeOptions {
                urls: urls.clone(),
                user: user.clone(),
                password: password.clone(),
                insecure: *insecure,
                ca_file: ca_file.clone(),
                timeout: *timeout,
            };
            return probe(cli, &options);
        }
        _ => {}
    }
    let (path, explicit) = cli.config_path();
    if !explicit && !path.exists() {
        bail!(
            "no config file given and {} does not exist; pass one with -c FILE \
             (conf/turnserver.toml in the source tree is a commented example)",
            path.display()
        );
    }
    let config = Config::read(&path)?;
    if let Some(Command::Token {
        room,
        ttl,
        namespace,
    }) = &cli.command
    {
        let Some(secret) = &config.signal.token_secret else {
            bail!(
                "{}: signal.token-secret is not set, so this server asks for no token (anyone \
                 may use /ws and /api/ice-servers): to require tokens, add token-secret = \
                 \"...\" (16 characters or more) under [signal], reload, then mint them here",
                path.display()
            );
        };
        let expiry = unix_now()? + ttl.as_secs();
        let Some(minted) = token::mint(secret.as_bytes(), expiry, namespace, room.as_deref())
        else {
            bail!("--namespace {namespace:?}: a namespace with ':' cannot be bound to a token");
        };
        println!("{minted}");
        return Ok(());
    }
    // Asked of this machine, by --check-config and at start alike.
    config
        .check_relay_addresses()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(tls) = &config.tls {
        // Certificates are part of "everything" that --check-config loads.
        if let Err(e) = rturn::server::tls::load(tls) {
            bail!("{}: {}", path.display(), tls_hint(tls, e));
        }
    }
    if cli.check_config {
        println!("{}: ok", path.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers().get())
        .thread_name("rturn-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config)?;
        let shutdown = CancellationToken::new();
        let (control, commands) = tokio::sync::mpsc::channel(4);
        handle_signals(path.clone(), shutdown.clone(), control)
            .context("cannot install signal handlers")?;
        rturn::run(&config, listeners, shutdown, commands).await;
        Ok(())
    })
}

/// SIGTERM/SIGINT stop; SIGHUP re-reads the config file and applies it if it is valid (the
/// old one stays in force otherwise); SIGUSR1 drains.
fn handle_signals(
    path: std::path::PathBuf,
    shutdown: CancellationToken,
    control: tokio::sync::mpsc::Sender<Control>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM received");
                    shutdown.cancel();
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT received");
                    shutdown.cancel();
                }
                _ = hup.recv() => match Config::read(&path) {
                    Ok(config) => {
                        tracing::info!("SIGHUP received: reloading {}", path.display());
                        let _ = control.send(Control::Reload(Box::new(config))).await;
                    }
                    Err(e) => tracing::error!("SIGHUP: reload refused, the running config stays: {e}"),
                },
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1 received: draining");
                    let _ = control.send(Control::Drain).await;
                }
            }
        }
    });
    Ok(())
}

/// `e`, or for a certificate or key this process may not read, who needs to read it and how.
fn tls_hint(tls: &rturn::config::TlsConfig, e: rturn::server::tls::TlsError) -> String {
    for (key, file) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
        if let Err(denied) = std::fs::File::open(file)
            && denied.kind() == std::io::ErrorKind::PermissionDenied
        {
            let why = rturn::config::read_error(file, &denied);
            return format!("{} ({key}): {why}", file.display());
        }
    }
    e.to_string()
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// The secret `rturn credentials` signs with, and the REST separator: `--secret` (or
/// RTURN_SECRET; `-` reads stdin's first line), else the config file's first
/// static-auth-secret. The file, when read, also gives the separator.
fn credentials_secret(cli: &Cli, given: Option<&str>) -> anyhow::Result<(String, char)> {
    const HOW: &str = "give the server's secret as RTURN_SECRET=... or on stdin \
                       (`rturn credentials --secret - < FILE`), or name its config with -c FILE";
    let (path, explicit) = cli.config_path();
    let secret = match given {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("--secret -: cannot read the secret from stdin")?;
            let secret = line.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                bail!("--secret -: stdin is empty; pipe the secret in, e.g. --secret - < FILE");
            }
            Some(secret.to_owned())
        }
        Some("") => bail!("the secret is empty: {HOW}"),
        other => other.map(str::to_owned),
    };
    if let (Some(secret), false) = (&secret, explicit) {
        return Ok((secret.clone(), ':'));
    }
    if !explicit && !path.exists() {
        bail!(
            "no secret to sign with: {} does not exist; {HOW}",
            path.display()
        );
    }
    let config = Config::read(&path)?;
    let separator = config.auth.rest_separator;
    if let Some(secret) = secret {
        return Ok((secret, separator));
    }
    match config.auth.static_auth_secret.first() {
        Some(first) => Ok((first.clone(), separator)),
        None => bail!(
            "{}: [auth] static-auth-secret is not set, so this server accepts no TURN REST \
             credentials: add one there (16 characters or more; every server that should \
             accept the credentials needs the same), or, for another server, {HOW}",
            path.display()
        ),
    }
}

/// `rturn credentials`: what an application backend would mint, for trying a TURN server.
fn print_credentials(
    secret: &str,
    rest_separator: char,
    user: Option<&str>,
    ttl: std::time::Duration,
    urls: &[String],
) -> anyhow::Result<()> {
    let auth = rturn::auth::Auth::new(rturn::auth::AuthSettings {
        secrets: vec![secret.to_owned()],
        rest_separator,
        ..Default::default()
    });
    let (username, credential) = auth
        .mint_rest(user, unix_now()?, ttl.as_secs())
        .context("cannot mint credentials")?;
    let snippet = serde_json::json!({"iceServers": [
        {"urls": urls, "username": username, "credential": credential}
    ]});
    println!("username: {username}");
    println!("password: {credential}");
    println!("{}", serde_json::to_string_pretty(&snippet)?);
    Ok(())
}

/// `rturn import-coturn FILE`: the converted TOML on stdout, what could not be converted on
/// stderr.
fn import_coturn(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read the file", file.display()))?;
    let converted = rturn::coturn::convert(&text);
    print!("{}", converted.toml);
    for skipped in &converted.skipped {
        eprintln!("{}: {skipped}", file.display());
    }
    Ok(())
}

/// `rturn probe`: the config is read only when given with -c, or when no URL says what to
/// probe; the report goes to stdout, and any failed step fails the command.
fn probe(cli: &Cli, options: &rturn::probe::ProbeOptions) -> anyhow::Result<()> {
    let (path, explicit) = cli.config_path();
    let config = if explicit || options.urls.is_empty() {
        Some(Config::read(&path)?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    match rturn::probe::run(config.as_ref(), options, &mut out) {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the probe failed: see the lines marked FAIL"),
        Err(e) => bail!("{e}"),
    }
}
