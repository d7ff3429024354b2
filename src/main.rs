//! The `rturn` binary: parse the command line, set up tracing, load the config, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use rturn::cli::{Cli, Command};
use rturn::signal::token;
use rturn::{Config, Listeners};

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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let (path, explicit) = cli.config_path();
    if !explicit && !path.exists() {
        bail!(
            "no config file given and {} does not exist; pass one with -c FILE \
             (conf/turnserver.toml in the source tree is a commented example)",
            path.display()
        );
    }
    let config = Config::read(&path)?;
    if let Some(Command::Token { room, ttl }) = &cli.command {
        let Some(secret) = &config.signal.token_secret else {
            bail!(
                "{}: signal.token-secret is not set, so rturn accepts no tokens",
                path.display()
            );
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?;
        let expiry = (now + *ttl).as_secs();
        println!(
            "{}",
            token::mint(secret.as_bytes(), expiry, room.as_deref())
        );
        return Ok(());
    }
    if let Some(tls) = &config.tls {
        // Certificates are part of "everything" that --check-config loads.
        rturn::server::tls::load(tls).with_context(|| format!("{}", path.display()))?;
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
        rturn::server::shutdown_on_signals(shutdown.clone())
            .context("cannot install signal handlers")?;
        rturn::run(&config, listeners, shutdown).await;
        Ok(())
    })
}
