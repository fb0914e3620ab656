//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sluice::config::Config;

/// sluice: a token-gated HLS/DASH streaming edge proxy.
///
/// sluice sits in front of a media bucket. Players fetch playlists, segments and keys through
/// its edge listener; operators manage it through the admin listener, which also serves
/// Prometheus metrics. One process, one YAML config file.
#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about,
    long_about,
    after_long_help = "EXAMPLES:\n  \
        sluice serve                        run with conf/sluice.yaml\n  \
        sluice serve -c /etc/sluice/sluice.yaml\n  \
        sluice check -c conf/sluice.yaml    validate a config and exit\n\n\
        ENVIRONMENT:\n  \
        RUST_LOG     overrides log.level (a tracing filter, e.g. info,sluice=debug)\n  \
        ${NAME}      any ${NAME} in the config file is replaced by that variable\n\n\
        SIGNALS:\n  \
        SIGTERM      graceful shutdown (drains for server.grace_period_seconds)\n  \
        SIGINT       fast shutdown\n  \
        SIGQUIT      graceful upgrade: hand sockets to `sluice serve --upgrade`"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge proxy and the admin service.
    ///
    /// Opens (and migrates) the SQLite state file, starts the edge listener (listen.edge),
    /// the admin listener (listen.admin) and, for a `dir:` bucket, the built-in file origin.
    /// Runs until signalled.
    Serve {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE", default_value = "conf/sluice.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from a running sluice (after SIGQUIT to it);
        /// needs server.upgrade_sock to match.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file and exit.
    ///
    /// Exits 0 when the file is valid. Otherwise prints the file, line and key at fault
    /// and exits 1.
    Check {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE", default_value = "conf/sluice.yaml")]
        config: PathBuf,
    },
}

fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, upgrade } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config.log.level, config.log.json);
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                config = %config.source,
                edge = %config.edge_addr,
                admin = %config.admin_addr,
                "starting sluice"
            );
            match sluice::server::build(config, upgrade) {
                Ok(s) => s.server.run_forever(),
                Err(e) => {
                    eprintln!("sluice: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
