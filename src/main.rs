//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sluice::config::Config;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        sluice check -c conf/sluice.yaml    validate a config for this host and exit\n  \
        sluice check -c FILE --offline      … for another host (the file only)\n  \
        sluice check -c FILE --dump         print the effective config, secrets redacted\n  \
        sluice keys create --name ci --permissions write\n  \
        sluice keys list | sluice keys revoke 3\n  \
        sluice state migrate --from sqlite --to redis\n  \
        sluice content-key generate --hash movie-2026-04-01\n  \
        sluice token key --hash movie-2026-04-01 --ttl 3600\n\n\
        ENVIRONMENT:\n  \
        RUST_LOG     overrides log.level (a tracing filter, e.g. info,sluice=debug)\n  \
        ${NAME}      ${NAME} in a config value is replaced by that variable\n\n\
        SIGNALS:\n  \
        SIGTERM      graceful stop: stop accepting, /health answers 503 draining, in-flight\n               \
        responses finish (at most server.grace_period_seconds, default 30), exit\n  \
        SIGQUIT      graceful upgrade: once `sluice serve --upgrade` listens on\n               \
        server.upgrade_sock, hand it the sockets and drain as for SIGTERM; if none\n               \
        listens within 30 s, keep serving (logged)\n  \
        SIGHUP       reopen server.error_log (daemon mode) and a log.access_log file;\n               \
        reload the config with a graceful upgrade\n  \
        SIGINT       fast stop: flush the access log, exit at once\n\n\
        DAEMON:\n  \
        With server.daemon: true (the shipped systemd unit, Type=forking), `sluice serve`\n  \
        starts the daemon and exits 0 once it listens on every listener and has written\n  \
        server.pid_file, or 1 with its reason; its output then goes to server.error_log."
)]
struct Cli {
    /// Configuration file (YAML): every command reads it (state.sqlite, kek, secrets).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "conf/sluice.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge proxy and the admin service.
    ///
    /// Opens (and migrates) the SQLite state file, starts the edge listener (listen.edge),
    /// the admin listener (listen.admin) and, for a `dir:` bucket, the built-in file origin.
    /// Runs until signalled. Once every listener listens, writes server.pid_file.
    ///
    /// With server.daemon: true (the shipped systemd unit, Type=forking) it starts itself
    /// again in the background and exits 0 once that daemon serves, or 1 with the daemon's
    /// reason when it cannot start; the daemon's output then goes to server.error_log.
    Serve {
        /// Take the listening sockets over from a running sluice (after SIGQUIT to it);
        /// needs server.upgrade_sock to match.
        #[arg(long)]
        upgrade: bool,
        /// Internal: this process is the daemon a `server.daemon: true` start detached.
        #[arg(long, hide = true)]
        detached: bool,
    },
    /// Manage admin API keys in the state database (works while sluice is running).
    ///
    /// Keys are 32 random characters; only their SHA-256 hash and an 8-character display
    /// prefix are stored. A created key is printed once and cannot be shown again.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Store content keys (for GET /api/key/{hash}), sealed under the current KEK.
    ContentKey {
        #[command(subcommand)]
        action: ContentKeyAction,
    },
    /// Mint tokens with the configured secrets.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Seal secrets for the config file with the current KEK.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Shared state of a fleet (state.redis).
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Validate a configuration file, for this host, and exit.
    ///
    /// Exits 0 when the file is valid and `serve` could run it here. Otherwise prints the
    /// file, line and key at fault and exits 1. Besides the file itself this checks what
    /// `serve` needs of this host (and `serve` refuses the same at start): the state directory
    /// (parent of state.sqlite) and cache.disk.path exist or can be created, and this user can
    /// write them; the IPs of listen.* and fleet.self are addresses of this machine (a port in
    /// use is fine: `systemctl reload` runs check while sluice holds it). What only run time
    /// can tell is printed as `warning: ...` without failing (Redis not reachable now, a
    /// missing dir: bucket, a missing directory of server.upgrade_sock, pid_file or
    /// error_log).
    Check {
        /// Check a config meant for another host: the file only, none of this host's
        /// directories, addresses or services.
        #[arg(long)]
        offline: bool,
        /// Print the effective configuration as YAML: every key at the value serve would use
        /// (defaults included, ${VAR} substituted), every secret shown as REDACTED (variable
        /// names are shown, their values never). It reads back as a config, except where a
        /// secret was written inline or by ${VAR}.
        #[arg(long)]
        dump: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (once).
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// admin (everything), write (stream ids, purge) or read (list only).
        #[arg(long, value_name = "admin|write|read")]
        permissions: String,
    },
    /// List keys: id, display prefix, name, permissions, created, last used, active.
    List,
    /// Deactivate a key by id or display prefix. Takes effect on the next request.
    Revoke {
        /// The key's id (from `list`) or its 8-character display prefix.
        key: String,
    },
    /// Re-seal every content key under kek.current (run with the old KEK in kek.previous).
    RotateKek,
}

#[derive(Subcommand)]
enum StateAction {
    /// Move API keys, stream ids, content keys and live revocations between the SQLite file
    /// (state.sqlite) and Redis (state.redis), both read from the config. Run it with the
    /// nodes stopped; running it twice changes nothing.
    Migrate {
        /// sqlite or redis
        #[arg(long)]
        from: String,
        /// redis or sqlite
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum ContentKeyAction {
    /// Import a 16-byte key given as 32 hex characters.
    Import {
        #[arg(long)]
        hash: String,
        #[arg(long, value_name = "HEX")]
        key_hex: String,
    },
    /// Generate a random key, store it and print it once (hex).
    Generate {
        #[arg(long)]
        hash: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// A playback key token (Bearer for GET /api/key/{hash}), signed with KEY_TOKEN_SECRET.
    Key {
        #[arg(long)]
        hash: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// A v2 envelope of a ClearKey key for signed_channels.channels[].keys.
    SealClearkey {
        #[arg(long)]
        kid: String,
        #[arg(long, value_name = "HEX")]
        key_hex: String,
    },
}

fn print_result(name: &str, r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys_command(config: &std::path::Path, action: KeysAction) -> Result<(), String> {
    use sluice::auth::api_keys::Permission;
    if let KeysAction::RotateKek = action {
        println!("{}", sluice::cli::rotate_kek(config)?);
        return Ok(());
    }
    match action {
        KeysAction::Create { name, permissions } => {
            let perm: Permission = permissions
                .parse()
                .map_err(|_| format!("--permissions `{permissions}`: use admin, write or read"))?;
            if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err("--name must be 1 to 128 printable characters".into());
            }
            let (id, key) = sluice::cli::api_key_create(config, &name, perm)?;
            println!("{key}");
            eprintln!(
                "created key {id} ({}); save it now, it cannot be shown again",
                perm.as_str()
            );
        }
        KeysAction::List => {
            let list = sluice::cli::api_key_list(config)?;
            println!(
                "{:<5} {:<9} {:<24} {:<12} {:<21} {:<21} ACTIVE",
                "ID", "PREFIX", "NAME", "PERMISSIONS", "CREATED", "LAST USED"
            );
            for k in list {
                println!(
                    "{:<5} {:<9} {:<24} {:<12} {:<21} {:<21} {}",
                    k.id,
                    k.key_prefix,
                    k.name,
                    k.permissions,
                    k.created_at,
                    k.last_used.unwrap_or_else(|| "-".into()),
                    if k.active { "yes" } else { "no" }
                );
            }
        }
        KeysAction::Revoke { key } => {
            let n = sluice::cli::api_key_revoke(config, &key)?;
            if n == 0 {
                return Err(format!("no active key matches `{key}`"));
            }
            println!("revoked {n} key(s)");
        }
        KeysAction::RotateKek => {}
    }
    Ok(())
}

/// `sluice check [--offline] [--dump]`.
fn check_command(path: &std::path::Path, offline: bool, dump: bool) -> ExitCode {
    let loaded = if offline {
        Config::load(path)
    } else {
        Config::load_for_this_host(path)
    };
    let dumped = match &loaded {
        Ok(_) if dump => Config::dump(path).map(Some),
        _ => Ok(None),
    };
    let (c, yaml) = match (loaded, dumped) {
        (Ok(c), Ok(yaml)) => (c, yaml),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(yaml) = yaml {
        // stdout is the YAML alone; notes go to stderr.
        print!("{yaml}");
        for note in c.notes() {
            eprintln!("note: {note}");
        }
    } else {
        println!("{}: ok", path.display());
        for note in c.notes() {
            println!("note: {note}");
        }
    }
    if !offline {
        for w in sluice::config::host::warnings(&c) {
            eprintln!("warning: {w}");
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Command::Check { offline, dump } => check_command(&config, offline, dump),
        Command::Keys { action } => match keys_command(&config, action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice keys: {e}");
                ExitCode::FAILURE
            }
        },
        Command::ContentKey { action } => print_result(
            "content-key",
            match action {
                ContentKeyAction::Import { hash, key_hex } => {
                    sluice::cli::content_key(&config, &hash, Some(&key_hex))
                }
                ContentKeyAction::Generate { hash } => {
                    sluice::cli::content_key(&config, &hash, None)
                }
            },
        ),
        Command::State { action } => match action {
            StateAction::Migrate { from, to } => print_result(
                "state migrate",
                sluice::cli::state_migrate(&config, &from, &to),
            ),
        },
        Command::Token { action } => match action {
            TokenAction::Key { hash, ttl } => {
                print_result("token", sluice::cli::key_token(&config, &hash, ttl))
            }
        },
        Command::Secret { action } => match action {
            SecretAction::SealClearkey { kid, key_hex } => print_result(
                "secret",
                sluice::cli::seal_clearkey(&config, &kid, &key_hex),
            ),
        },
        Command::Serve { upgrade, detached } => serve(&config, upgrade, detached),
    }
}

/// `sluice serve`: validate, detach when `server.daemon` asks for it, build and run.
fn serve(path: &std::path::Path, upgrade: bool, detached: bool) -> ExitCode {
    // The same refusals as `sluice check` (config::host), before anything starts.
    let config = match Config::load_for_this_host(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let server = config.server_conf();
    let settings = sluice::daemon::DaemonSettings::from_server_conf(&server);
    if server.daemon && !detached {
        // Nothing has been opened yet: the daemon opens everything itself.
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        return sluice::daemon::detach(&settings, &args);
    }
    let startup = sluice::daemon::Startup::new(
        detached,
        &settings,
        PathBuf::from(&server.pid_file),
        config.listeners(),
    );
    if let Err(e) = sluice::logging::init(&config.log) {
        return startup.fail(&format!("{}: {e}", config.source));
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.source,
        edge = %config.edge_addr,
        admin = %config.admin_addr,
        daemon = detached,
        "starting sluice"
    );
    match sluice::server::build(config, upgrade) {
        Ok(s) => s.run(startup),
        Err(e) => startup.fail(&e.to_string()),
    }
}
