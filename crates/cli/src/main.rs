//! The `registro` binary: it only wires configuration, the store and the API together.

mod args;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use registro_domain::SchoolId;
use registro_store::verify::{Verification, verify_school};
use registro_store::{EventStore, MasterKey, StoreConfig, StoreLocation};
use tracing_subscriber::EnvFilter;

use args::{Cli, Command, ServeArgs, StorageArgs, TokenArgs, VerifyArgs};
use registro_api::auth::LocalIssuer;
use registro_domain::FiscalCode;

/// The local token issuer's key file name in the data directory.
const ISSUER_FILE: &str = "issuer.pem";
/// The embedded database's file name in the data directory.
const SQLITE_FILE: &str = "registro.db";
/// The embedded master key's file name in the data directory.
const KEY_FILE: &str = "master.key";

/// Exit codes: 0 done, 1 a verification found a broken chain, 2 anything else went wrong.
const BROKEN: u8 = 1;
const FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => migrate(args).await.map(|()| ExitCode::SUCCESS),
            Command::Verify(args) => verify(args).await,
            Command::Token(args) => token(&args).map(|()| ExitCode::SUCCESS),
        }
    });
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "registro: {e:#}");
    ExitCode::from(FAILED)
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("REGISTRO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What a command does with sealed data, which decides whether it needs the real master key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// Opens and seals data: needs the real key (created in embedded mode).
    Seals,
    /// Never opens sealed data: any key will do when none is configured.
    Never,
}

async fn open_store(
    args: &StorageArgs,
    key_use: KeyUse,
    migrate: bool,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let (location, master_key) = match &args.database_url {
        Some(url) => {
            let key = match (&args.master_key, key_use) {
                (Some(k), _) => parse_key(k.expose())?,
                (None, KeyUse::Never) => MasterKey::generate(),
                (None, KeyUse::Seals) => bail!(
                    "with PostgreSQL a master key is required: set REGISTRO_MASTER_KEY (or \
                     --master-key) to 32 bytes in base64, from your secret store"
                ),
            };
            let location = StoreLocation::Postgres {
                url: url.expose().to_owned(),
                max_connections: args.max_connections,
            };
            (location, key)
        }
        None => {
            let path = args.data_dir.join(SQLITE_FILE);
            if key_use == KeyUse::Never && !path.exists() {
                bail!("there is no database at {}", path.display());
            }
            let key = match &args.master_key {
                Some(k) => parse_key(k.expose())?,
                None if key_use == KeyUse::Seals => embedded_key(&args.data_dir)?,
                None => MasterKey::generate(),
            };
            (StoreLocation::Sqlite { path }, key)
        }
    };
    Ok(registro_store::open(StoreConfig {
        location,
        master_key,
        migrate,
    })
    .await?)
}

fn parse_key(text: &str) -> anyhow::Result<MasterKey> {
    MasterKey::parse(text).map_err(|e| anyhow::anyhow!("invalid master key: {e}"))
}

/// The embedded mode's key file: read it, or create it (mode 0600) on first start.
fn embedded_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the master key from {}", path.display()))?;
        return MasterKey::parse(&text)
            .map_err(|e| anyhow::anyhow!("the master key in {}: {e}", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let key = MasterKey::generate();
    write_private(&path, &key.to_base64())
        .with_context(|| format!("writing the master key to {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "created a new master key; in production supply REGISTRO_MASTER_KEY from a secret store \
         and keep a copy: without it sealed data cannot be read"
    );
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage, KeyUse::Seals, args.migrate_on_start).await?;
    tracing::info!(backend = store.backend().as_str(), "store open");
    // No external identity provider can be configured yet: the local issuer's keys are served.
    let issuer = local_issuer(&args.storage.data_dir)?;
    let app = registro_api::build(
        registro_api::ApiConfig {
            listen: args.listen,
            local_jwks: Some(issuer.jwks()),
        },
        store,
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

async fn migrate(args: StorageArgs) -> anyhow::Result<()> {
    let store = open_store_for_migrate(&args).await?;
    let applied = store.migrate().await?;
    let mut out = std::io::stdout();
    if applied.is_empty() {
        writeln!(out, "the database is up to date: nothing to apply")?;
    } else {
        writeln!(out, "applied migrations {applied:?}")?;
    }
    Ok(())
}

/// `migrate` may create the embedded database, but never needs the master key.
async fn open_store_for_migrate(args: &StorageArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    if args.database_url.is_none() {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let path = args.data_dir.join(SQLITE_FILE);
        return Ok(registro_store::open(StoreConfig {
            location: StoreLocation::Sqlite { path },
            master_key: MasterKey::generate(),
            migrate: false,
        })
        .await?);
    }
    open_store(args, KeyUse::Never, false).await
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.storage, KeyUse::Never, false).await?;
    let status = store.migration_status().await?;
    if !status.is_current() {
        bail!(
            "the database is not migrated (pending: {:?}); run `registro migrate`",
            status.pending
        );
    }
    let school = SchoolId::from_uuid(args.school);
    let mut out = std::io::stdout();
    match verify_school(store.as_ref(), school).await? {
        Verification::Intact { events: 0, .. } => bail!("school {school} has no events"),
        Verification::Intact { events, head } => {
            let head = head.map_or_else(|| "none".to_owned(), |h| h.to_hex());
            writeln!(out, "OK {events} events, head {head}")?;
            Ok(ExitCode::SUCCESS)
        }
        Verification::Broken { school_seq, reason } => {
            writeln!(out, "BROKEN at school_seq {school_seq}: {reason}")?;
            Ok(ExitCode::from(BROKEN))
        }
    }
}

/// The local issuer's key in the data directory, created (mode 0600) on first use.
fn local_issuer(data_dir: &Path) -> anyhow::Result<LocalIssuer> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(ISSUER_FILE);
    LocalIssuer::load_or_create(&path)
        .with_context(|| format!("the local token issuer's key at {}", path.display()))
}

/// `registro token`: prints a token of the local issuer.
fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let fiscal_code =
        FiscalCode::parse(&args.fiscal_code).map_err(|e| anyhow::anyhow!("--fiscal-code: {e}"))?;
    let issuer = local_issuer(&args.data_dir)?;
    let token = issuer.issue(SchoolId::from_uuid(args.school), &fiscal_code, args.ttl.0)?;
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}
