//! Command-line flags. Every flag has a `REGISTRO_*` environment fallback; the flag wins.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

/// registro: the event-sourced Italian school electronic register (registro elettronico).
#[derive(Debug, Parser)]
#[command(name = "registro", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log as JSON lines instead of text (logs go to standard error).
    #[arg(long, env = "REGISTRO_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Apply the pending database migrations and exit.
    Migrate(StorageArgs),
    /// Recompute a school's hash chain and report the first broken event, if any.
    Verify(VerifyArgs),
}

/// Where the events live: the same flags for every subcommand that touches storage.
#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// Directory of the embedded store (`registro.db`, `master.key`); created if missing.
    #[arg(long, env = "REGISTRO_DATA_DIR", default_value = "./registro-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user:password@host:port/db). Without it, the embedded SQLite
    /// file `<data-dir>/registro.db` is used.
    #[arg(long, env = "REGISTRO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// The most PostgreSQL connections the pool opens.
    #[arg(long, env = "REGISTRO_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: usize,
    /// Master key wrapping the data subjects' keys (32 bytes, base64 or 64 hex digits). With
    /// SQLite and no key, `<data-dir>/master.key` is used, created (mode 0600) on first start;
    /// with PostgreSQL, `serve` refuses to start without it.
    #[arg(long, env = "REGISTRO_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<Secret>,
}

/// `registro serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "REGISTRO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Apply pending migrations at start; with `false`, start anyway and report not ready.
    #[arg(
        long,
        env = "REGISTRO_MIGRATE_ON_START",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub migrate_on_start: bool,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The school whose chain to verify.
    #[arg(long, env = "REGISTRO_SCHOOL")]
    pub school: uuid::Uuid,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// A value that must never be printed (a key, a URL with a password).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}
