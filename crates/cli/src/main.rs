//! The `registro` binary: it only wires configuration, the store and the API together.

mod args;
mod bench;
mod demo;
mod generate;
mod progress;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use registro_domain::SchoolId;
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_store::verify::{Verification, verify_school};
use registro_store::{EventStore, MasterKey, StoreConfig, StoreLocation};
use tracing_subscriber::EnvFilter;

use args::{
    AddPersonArgs, BenchArgs, Cli, Command, ExportArgs, GenerateArgs, ImportArgs, OidcArgs,
    PassphraseArgs, ProjectArgs, RebuildArgs, RetentionArgs, RetentionCommand, ServeArgs,
    StorageArgs, TokenArgs, VerifyArgs,
};
use registro_api::auth::{HttpJwks, KeySet, LocalIssuer, TokenVerifier, VerifierConfig};
use registro_api::ratelimit::RateLimit;
use registro_domain::directory::DirectoryCommand;
use registro_domain::{FiscalCode, PersonId, Role};

/// The local token issuer's key file name in the data directory.
const ISSUER_FILE: &str = "issuer.pem";
/// The embedded database's file name in the data directory.
const SQLITE_FILE: &str = "registro.db";
/// The embedded master key's file name in the data directory.
const KEY_FILE: &str = "master.key";
/// How long `import` waits for each projection to hold the imported events.
const IMPORT_PROJECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Exit codes: 0 done, 1 a verification found a broken chain, 2 anything else went wrong.
const BROKEN: u8 = 1;
const FAILED: u8 = 2;

fn main() -> ExitCode {
    // Before any thread starts (ADR 0034).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let tuned = registro_malloc::tune(cores);
    let cli = Cli::parse();
    // The generator and the benchmarks send thousands of requests a second in-process: their
    // request lines would drown what they print.
    let quiet = matches!(cli.command, Command::Generate(_) | Command::Bench(_));
    init_logging(cli.log_json, if quiet { "warn" } else { "info" });
    match tuned {
        Ok(tuned) => tracing::debug!(?tuned, "allocator"),
        Err(e) => tracing::warn!(error = %e, "the allocator could not be tuned (fully)"),
    }
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
            Command::AddPerson(args) => add_person(args).await.map(|()| ExitCode::SUCCESS),
            Command::Project(args) => project(args).await.map(|()| ExitCode::SUCCESS),
            Command::Rebuild(args) => rebuild(args).await.map(|()| ExitCode::SUCCESS),
            Command::Export(args) => export(args).await.map(|()| ExitCode::SUCCESS),
            Command::Import(args) => import(args).await.map(|()| ExitCode::SUCCESS),
            Command::Retention(RetentionCommand::Run(args)) => {
                retention(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Generate(args) => generate_school(args).await.map(|()| ExitCode::SUCCESS),
            Command::Bench(args) => run_bench(args).await.map(|()| ExitCode::SUCCESS),
        }
    });
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "registro: {}", message(e));
    ExitCode::from(FAILED)
}

/// The error and its causes on one line, each cause once: errors that already print their
/// source in their own message are not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn init_logging(json: bool, default: &str) {
    let filter =
        EnvFilter::try_from_env("REGISTRO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What a command does with the store, which decides what it may create and which master key
/// it needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// `serve`: opens and seals data, so it needs the real master key (in embedded mode, the
    /// data directory's key file, created on first start).
    Serve,
    /// `migrate`: may create the embedded database; never opens sealed data.
    Migrate,
    /// `verify`: reads an existing database; never opens sealed data.
    Verify,
}

/// Where the events live and the master key to open them with.
fn location_and_key(
    args: &StorageArgs,
    purpose: Purpose,
) -> anyhow::Result<(StoreLocation, MasterKey)> {
    let given = args
        .master_key
        .as_ref()
        .map(|k| parse_key(k.expose()))
        .transpose()?;
    if let Some(url) = &args.database_url {
        let key = match (given, purpose) {
            (Some(key), _) => key,
            // Never used to open sealed data: any key will do.
            (None, Purpose::Migrate | Purpose::Verify) => MasterKey::generate(),
            (None, Purpose::Serve) => bail!(
                "with PostgreSQL a master key is required: set REGISTRO_MASTER_KEY (or \
                 --master-key) to 32 bytes in base64, from your secret store"
            ),
        };
        let location = StoreLocation::Postgres {
            url: url.expose().to_owned(),
            max_connections: args.max_connections,
        };
        return Ok((location, key));
    }
    let path = args.data_dir.join(SQLITE_FILE);
    if purpose == Purpose::Verify && !path.exists() {
        bail!("there is no database at {}", path.display());
    }
    let key = match (given, purpose) {
        (Some(key), _) => key,
        (None, Purpose::Serve) => embedded_key(&args.data_dir)?,
        (None, Purpose::Migrate | Purpose::Verify) => MasterKey::generate(),
    };
    Ok((StoreLocation::Sqlite { path }, key))
}

/// Opens the store for `serve`, applying the pending migrations when asked.
async fn open_for_serving(
    args: &StorageArgs,
    migrate: bool,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let (location, master_key) = location_and_key(args, Purpose::Serve)?;
    Ok(registro_store::open(StoreConfig {
        location,
        master_key,
        migrate,
    })
    .await?)
}

/// Opens the store for a maintenance command, with no migration applied or checked: the command
/// does that itself (so that `migrate` does not first warn that migrations are pending).
async fn open_for_maintenance(
    args: &StorageArgs,
    purpose: Purpose,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let (location, master_key) = location_and_key(args, purpose)?;
    Ok(match location {
        StoreLocation::Postgres {
            url,
            max_connections,
        } => Arc::new(PgStore::connect(&url, max_connections, master_key).await?),
        StoreLocation::Sqlite { path } => Arc::new(SqliteStore::open(&path, master_key).await?),
    })
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
    let store = open_for_serving(&args.storage, args.migrate_on_start).await?;
    tracing::info!(backend = store.backend().as_str(), "store open");
    if store.row_security().await? == Some(false) && !args.allow_rls_bypass {
        bail!(
            "PostgreSQL's row-level security does not hold this role (it is a superuser or has \
             BYPASSRLS), so nothing in the database would keep one school's requests from \
             another's rows: connect as an ordinary role (docs/operations.md, \"The database \
             role\"), or pass --allow-rls-bypass (REGISTRO_ALLOW_RLS_BYPASS) to serve anyway"
        );
    }
    let (verifier, local_jwks, issuer) = identity(&args.oidc, &args.storage.data_dir).await?;
    let app = registro_api::build(
        registro_api::ApiConfig {
            listen: args.listen,
            local_jwks,
            verifier,
            read_limit: RateLimit {
                per_minute: args.read_rate_limit,
                burst: args.read_burst,
            },
            today: None,
            cors_origins: args.cors_origins.clone(),
            overview_cache_bytes: args.overview_cache_mib.saturating_mul(1 << 20),
            projections: registro_api::ProjectionConfig {
                names: projections()
                    .iter()
                    .map(|p| p.schema().name.to_owned())
                    .collect(),
                read_wait: std::time::Duration::from_millis(args.read_wait_ms),
                degraded_after: std::time::Duration::from_secs(
                    args.projection_lag_degraded_seconds,
                ),
            },
        },
        Arc::clone(&store),
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    if args.demo {
        let issuer =
            issuer.context("--demo needs the local token issuer: leave out --oidc-issuer")?;
        print_demo(Arc::clone(&store), &issuer, app.port()).await?;
    }
    if store.backend() != registro_store::Backend::Sqlite {
        // The projectors run as processes of their own; the read models' tables are made here
        // too when this role may, so that the routes reading them answer from the start.
        for projection in projections() {
            let schema = projection.schema();
            if let Err(e) = store.prepare_projection(&schema).await {
                tracing::warn!(
                    projection = schema.name,
                    error = %e,
                    "cannot prepare the projection's tables: its projector will"
                );
            }
        }
        return app.run_until_stopped(shutdown_signal()).await;
    }
    // Embedded: the projectors run in this process, stopped with the service, once the
    // migrations their tables need are applied (by this process or by `registro migrate`).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let projectors = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            loop {
                match store.migration_status().await {
                    Ok(status) if status.pending.is_empty() => break,
                    Ok(_) => tracing::info!("projectors wait for the pending migrations"),
                    Err(e) => tracing::warn!(error = %e, "projectors cannot check the migrations"),
                }
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return Ok(()),
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            let mut running = start_projectors(
                &store,
                projections(),
                registro_projector::DEFAULT_BATCH,
                &stopped,
            )
            .await?;
            while running.join_next().await.is_some() {}
            anyhow::Ok(())
        })
    };
    let served = app.run_until_stopped(shutdown_signal()).await;
    let _ = stop.send(true);
    match projectors.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the projectors could not run"),
        Err(e) => tracing::error!(error = %e, "the projectors' task failed"),
    }
    served
}

/// The token verifier: the identity provider's when one is configured (its keys fetched over
/// HTTPS), otherwise the local issuer's, whose keys are then served and which is returned.
async fn identity(
    oidc: &OidcArgs,
    data_dir: &Path,
) -> anyhow::Result<(
    TokenVerifier,
    Option<registro_api::auth::JwkSet>,
    Option<LocalIssuer>,
)> {
    // An empty value (a variable set to nothing, as compose.yaml passes it) is no value.
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let Some(issuer_url) = given(&oidc.oidc_issuer) else {
        let issuer = local_issuer(data_dir)?;
        let verifier = TokenVerifier::new(
            LocalIssuer::verifier_config(),
            Arc::new(KeySet::new(Arc::new(issuer.clone()))),
        );
        return Ok((verifier, Some(issuer.jwks()), Some(issuer)));
    };
    let audience = given(&oidc.oidc_audience)
        .context("--oidc-audience (REGISTRO_OIDC_AUDIENCE) is required with --oidc-issuer")?;
    let source = match given(&oidc.oidc_jwks_url) {
        Some(url) => HttpJwks::new(&url)?,
        None => HttpJwks::discover(&issuer_url)
            .await
            .with_context(|| format!("OpenID Connect discovery at {issuer_url}"))?,
    };
    tracing::info!(issuer = %issuer_url, jwks = source.url(), "trusting the identity provider");
    let config = VerifierConfig {
        issuer: issuer_url.clone(),
        audience,
        fiscal_code_claim: oidc.oidc_fiscal_code_claim.clone(),
        leeway: std::time::Duration::from_secs(60),
    };
    Ok((
        TokenVerifier::new(config, Arc::new(KeySet::new(Arc::new(source)))),
        None,
        None,
    ))
}

/// Creates or finds the demo school and prints its tokens.
async fn print_demo(
    store: Arc<dyn EventStore>,
    issuer: &LocalIssuer,
    port: u16,
) -> anyhow::Result<()> {
    let tokens = demo::ensure(store, issuer).await?;
    let school = demo::school();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Demo school {school}: one token per role, valid for 12 hours."
    )?;
    for (who, token) in &tokens {
        writeln!(out, "\n# {who}\n{token}")?;
    }
    writeln!(
        out,
        "\nTry: curl -H \"Authorization: Bearer <token>\" http://127.0.0.1:{port}/schools/{school}/me"
    )?;
    out.flush()?;
    Ok(())
}

/// `registro generate`: a school year through the API's commands; prints the school's id
/// first, then the summary (progress goes to standard error).
async fn generate_school(args: GenerateArgs) -> anyhow::Result<()> {
    let store = open_for_serving(&args.storage, true).await?;
    let sizes = generate::Sizes {
        students: args.students,
        classes: args.classes,
        days: args.days,
        seed: args.seed,
        year: args.year,
    };
    let started = std::time::Instant::now();
    let generated = generate::generate(store, &args.school, sizes, |done, total| {
        let _ = writeln!(
            std::io::stderr(),
            "registro generate: day {done} of {total} ({:.0?})",
            started.elapsed()
        );
    })
    .await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "school {}", generated.school)?;
    writeln!(out, "{}", generated.summary)?;
    writeln!(out, "took {:.1?}", started.elapsed())?;
    Ok(())
}

/// `registro bench`: every benchmark, its table on standard output (and in `--out`).
async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("registro-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let options = bench::Options {
        server_url: args.database_url.expose().to_owned(),
        size: args.size,
        runs: args.runs,
        source: args
            .source_data_dir
            .zip(args.school.map(SchoolId::from_uuid)),
        scratch: scratch.clone(),
        only: args.only,
        year: args.year,
    };
    let result = bench::run(&options, |step| {
        let _ = writeln!(std::io::stderr(), "registro bench: {step}");
    })
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let rows = result?;
    let text = format!(
        "{}\n{}\n\n{}",
        bench::machine(&options.server_url).await,
        bench::sizes_line(args.size, args.runs),
        bench::table(&rows)
    );
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}")?;
    Ok(())
}

/// `registro add-person`: registers a person as the software itself.
async fn add_person(args: AddPersonArgs) -> anyhow::Result<()> {
    let fiscal_code =
        FiscalCode::parse(&args.fiscal_code).map_err(|e| anyhow::anyhow!("--fiscal-code: {e}"))?;
    let role: Role = args
        .role
        .parse()
        .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let store = open_for_serving(&args.storage, true).await?;
    let person = PersonId::new();
    let command = DirectoryCommand::Register {
        person,
        fiscal_code,
        family_name: args.family_name,
        given_name: args.given_name,
        role,
        birth_date: None,
    };
    let outcome = registro_api::directory::execute_as_system(
        store.as_ref(),
        SchoolId::from_uuid(args.school),
        &command,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(
        std::io::stdout(),
        "{person} (school_seq {})",
        outcome.last_seq
    )?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
/// Every projection registro builds.
fn projections() -> Vec<Arc<dyn registro_projector::Projection>> {
    vec![
        Arc::new(registro_projection_audit::AuditTrail),
        Arc::new(registro_projection_family::FamilyView),
        Arc::new(registro_projection_scrutiny::ScrutinyReport),
    ]
}

/// Prepares the projections' tables, then starts a projector for each, applying up to `batch`
/// events a transaction, running until `stop` fires; a projector that stops at an event it
/// cannot apply is logged and the others go on.
async fn start_projectors(
    store: &Arc<dyn EventStore>,
    chosen: Vec<Arc<dyn registro_projector::Projection>>,
    batch: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let mut running = tokio::task::JoinSet::new();
    for projection in chosen {
        let name = projection.schema().name;
        let projector = registro_projector::Projector::new(Arc::clone(store), projection)
            .with_batches(batch, registro_projector::DEFAULT_POLL);
        projector
            .prepare()
            .await
            .with_context(|| format!("preparing the tables of projection {name}"))?;
        let mut stop = stop.clone();
        running.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = projector.run(stopped).await {
                tracing::error!(projection = name, error = %e, "projector stopped");
            }
        });
    }
    Ok(running)
}

/// The projections `name` or `all` choose.
fn chosen_projections(
    name: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<Arc<dyn registro_projector::Projection>>> {
    let chosen: Vec<_> = projections()
        .into_iter()
        .filter(|p| all || name == Some(p.schema().name))
        .collect();
    if chosen.is_empty() {
        let known: Vec<_> = projections().iter().map(|p| p.schema().name).collect();
        bail!(
            "no projection is called {:?}; there are: {}",
            name.unwrap_or_default(),
            known.join(", ")
        );
    }
    Ok(chosen)
}

async fn project(args: ProjectArgs) -> anyhow::Result<()> {
    let chosen = chosen_projections(args.name.as_deref(), args.all)?;
    let store = open_for_serving(&args.storage, false).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = start_projectors(&store, chosen, args.batch, &stopped).await?;
    shutdown_signal().await;
    let _ = stop.send(true);
    while running.join_next().await.is_some() {}
    Ok(())
}

/// `registro rebuild`: rebuilds each projection chosen, one after the other, showing the
/// progress on standard error and a summary of each on standard output.
async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let chosen = chosen_projections(args.name.as_deref(), args.all)?;
    if args.storage.database_url.is_none() {
        let path = args.storage.data_dir.join(SQLITE_FILE);
        if !path.exists() {
            bail!("there is no database at {}", path.display());
        }
    }
    let store = open_for_serving(&args.storage, false).await?;
    let status = store.migration_status().await?;
    if !status.is_current() {
        bail!(
            "the database is not migrated (pending: {:?}); run `registro migrate`",
            status.pending
        );
    }
    let terminal = std::io::stderr().is_terminal();
    for projection in chosen {
        let name = projection.schema().name;
        let projector = registro_projector::Projector::new(Arc::clone(&store), projection);
        let mut display = progress::Display::new(name, terminal, std::io::stderr());
        let rebuilt = projector
            .rebuild(|p| display.show(p, std::time::Instant::now()))
            .await;
        display.interrupt();
        let rebuilt = rebuilt.with_context(|| format!("rebuilding projection {name}"))?;
        writeln!(
            std::io::stdout(),
            "rebuilt {name}: {} events in {}, checkpoint {}",
            rebuilt.events,
            progress::elapsed(rebuilt.elapsed),
            rebuilt.position
        )?;
    }
    Ok(())
}

/// Opens an existing, migrated store with the real master key (subject keys are unwrapped).
async fn open_existing(storage: &StorageArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    if storage.database_url.is_none() {
        let path = storage.data_dir.join(SQLITE_FILE);
        if !path.exists() {
            bail!("there is no database at {}", path.display());
        }
    }
    let store = open_for_serving(storage, false).await?;
    let status = store.migration_status().await?;
    if !status.is_current() {
        bail!(
            "the database is not migrated (pending: {:?}); run `registro migrate`",
            status.pending
        );
    }
    Ok(store)
}

/// The key bundle's passphrase, from `REGISTRO_BUNDLE_PASSPHRASE` or the file's first line.
fn passphrase(args: &PassphraseArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.passphrase_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the passphrase from {}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(std::env::var("REGISTRO_BUNDLE_PASSPHRASE").ok())
}

/// A progress display of `name` fed with `done` of `total` events.
fn show_progress(
    display: &mut progress::Display<std::io::Stderr>,
    done: u64,
    total: u64,
    started: std::time::Instant,
    stage: registro_projector::Stage,
) {
    display.show(
        &registro_projector::Progress {
            stage,
            done,
            total: total.max(done),
            elapsed: started.elapsed(),
            position: registro_store::Position::START,
        },
        std::time::Instant::now(),
    );
}

/// `registro export`: the school's log to an NDJSON file, its subject keys to a bundle.
async fn export(args: ExportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let store = open_existing(&args.storage).await?;
    let school = SchoolId::from_uuid(args.school);
    // The log's head first, then the keys: a key destroyed in between is recorded in the log,
    // which the import applies over the bundle.
    let mut exporter =
        registro_store::portable::Exporter::new(Arc::clone(&store), school, registro_api::SOFTWARE)
            .await?;
    let keys = store.subject_keys(school).await?;
    let keys_path = args.keys.clone().unwrap_or_else(|| {
        let mut name = args.out.clone().into_os_string();
        name.push(".keys");
        std::path::PathBuf::from(name)
    });
    // Everything that can be refused is, before anything is written.
    let bundle = if keys.is_empty() {
        None
    } else {
        let Some(passphrase) = passphrase(&args.passphrase)? else {
            bail!(
                "school {school} has sealed data: its key bundle needs a passphrase \
                 (REGISTRO_BUNDLE_PASSPHRASE or --passphrase-file)"
            );
        };
        Some(registro_store::bundle::seal_bundle(
            school,
            &keys,
            &passphrase,
        )?)
    };
    let total = exporter.manifest().events;
    if total == 0 {
        bail!("school {school} has no events");
    }
    if args.out.exists() {
        bail!("{} exists: choose another name", args.out.display());
    }
    // Written beside it under another name, renamed once complete: a failed export leaves no
    // file that looks like one.
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let terminal = std::io::stderr().is_terminal();
    let mut display = progress::Display::transfer("export", terminal, std::io::stderr());
    let started = std::time::Instant::now();
    while let Some(chunk) = exporter.next_chunk().await? {
        out.write_all(chunk.as_bytes())?;
        show_progress(
            &mut display,
            exporter.events_written(),
            total,
            started,
            registro_projector::Stage::Building,
        );
    }
    out.flush()?;
    out.into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.out.display()))?
        .sync_all()?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), args.out.display()))?;
    show_progress(
        &mut display,
        total,
        total,
        started,
        registro_projector::Stage::Done,
    );
    display.interrupt();
    if let Some(bundle) = bundle {
        write_private(&keys_path, &bundle)
            .with_context(|| format!("writing the key bundle to {}", keys_path.display()))?;
    }
    let manifest = exporter.manifest();
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "exported school {school}: {} events, head {}, to {}",
        manifest.events,
        manifest.head.as_deref().unwrap_or("none"),
        args.out.display()
    )?;
    if !keys.is_empty() {
        writeln!(
            stdout,
            "the keys of {} data subjects are in {}, encrypted with the passphrase: keep them apart",
            keys.len(),
            keys_path.display()
        )?;
    }
    Ok(())
}

/// `registro import`: an export into this instance, then the projections up to it.
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Read as _};
    let store = open_existing(&args.storage).await?;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let manifest = registro_store::portable::read_manifest(&first)?;
    let school = manifest.school;
    let keys = match &args.keys {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the key bundle {}", path.display()))?;
            let Some(passphrase) = passphrase(&args.passphrase)? else {
                bail!(
                    "the key bundle needs its passphrase (REGISTRO_BUNDLE_PASSPHRASE or \
                     --passphrase-file)"
                );
            };
            let (bundled, keys) = registro_store::bundle::open_bundle(&text, &passphrase)?;
            if bundled != school {
                bail!("the key bundle is school {bundled}'s, the export school {school}'s");
            }
            keys
        }
    };
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let lines = std::io::Cursor::new(first).chain(reader);
    let importing =
        registro_store::portable::import(store.as_ref(), lines, keys, Arc::clone(&read));
    tokio::pin!(importing);
    let terminal = std::io::stderr().is_terminal();
    let mut display = progress::Display::transfer("import", terminal, std::io::stderr());
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let imported = loop {
        tokio::select! {
            done = &mut importing => break done,
            _ = tick.tick() => show_progress(
                &mut display,
                read.load(std::sync::atomic::Ordering::Relaxed),
                manifest.events,
                started,
                registro_projector::Stage::Building,
            ),
        }
    };
    display.interrupt();
    let imported = imported.with_context(|| {
        format!(
            "importing {}: nothing of school {school} was written",
            args.input.display()
        )
    })?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "imported school {school}: {} events, head {}, {} attachments",
        imported.events,
        imported.head.as_deref().unwrap_or("none"),
        imported.attachments
    )?;
    // The read models of a school new to this instance: its events are after every
    // projection's checkpoint, so bringing each up to the head builds the school's rows.
    // On PostgreSQL an event reaches the projectors once the transactions older than it have
    // ended: each is caught up until it holds the school's last event, for a bounded time.
    for projection in projections() {
        let name = projection.schema().name;
        let projector = registro_projector::Projector::new(Arc::clone(&store), projection);
        let deadline = std::time::Instant::now() + IMPORT_PROJECTION_WAIT;
        let caught_up = async {
            projector.prepare().await?;
            loop {
                let position = projector.catch_up().await?;
                if store
                    .projection_reached(name, school, imported.events)
                    .await?
                    || std::time::Instant::now() >= deadline
                {
                    return Ok::<_, anyhow::Error>(position);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        match caught_up.await {
            Ok(position)
                if store
                    .projection_reached(name, school, imported.events)
                    .await? =>
            {
                writeln!(stdout, "projection {name}: up to {position}")?;
            }
            Ok(_) => writeln!(
                stdout,
                "projection {name}: not up to the imported events yet; its projector will be"
            )?,
            Err(e) => writeln!(
                stdout,
                "projection {name}: not brought up to date here ({e}); its projector will"
            )?,
        }
    }
    Ok(())
}

/// `registro retention run`: erases the school's special-category details whose retention
/// ended (today in Italy), as the software itself.
async fn retention(args: RetentionArgs) -> anyhow::Result<()> {
    let store = open_existing(&args.storage).await?;
    let school = SchoolId::from_uuid(args.school);
    let directory = registro_api::SchoolCache::<registro_domain::directory::Directory>::default()
        .current(store.as_ref(), school)
        .await?
        .state;
    let today = registro_domain::calendar::italian_date(time::OffsetDateTime::now_utc());
    let erased = registro_api::retention::run(
        store.as_ref(),
        school,
        &directory,
        today,
        &registro_store::CommandMetadata::system(),
    )
    .await?;
    let mut out = std::io::stdout();
    for e in &erased {
        writeln!(
            out,
            "erased the special-category details of student {} in {}/{}",
            e.student,
            e.year,
            (e.year + 1) % 100
        )?;
    }
    writeln!(
        out,
        "retention of school {school}: {} records erased now (kept {} school years after their \
         own)",
        erased.len(),
        directory.retention_settings().years_after
    )?;
    Ok(())
}

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
    let store = open_for_maintenance(&args, Purpose::Migrate).await?;
    let applied = store.migrate().await?;
    let mut out = std::io::stdout();
    if applied.is_empty() {
        writeln!(out, "the database is up to date: nothing to apply")?;
    } else {
        writeln!(out, "applied migrations {applied:?}")?;
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = open_for_maintenance(&args.storage, Purpose::Verify).await?;
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
            let Some(published) = &args.head else {
                writeln!(out, "OK {events} events, head {head}")?;
                return Ok(ExitCode::SUCCESS);
            };
            let published = registro_store::Hash::from_hex(published.trim())
                .map_err(|e| anyhow::anyhow!("--head: {e}"))?;
            match registro_store::verify::find_hash(store.as_ref(), school, &published).await? {
                Some(at) => {
                    writeln!(
                        out,
                        "OK {events} events, head {head}; the published head {published} is \
                         event {at}"
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    writeln!(
                        out,
                        "BROKEN: the published head {published} is not in the log, which verifies \
                         on its own ({events} events, head {head}): the log up to it was rewritten \
                         or removed"
                    )?;
                    Ok(ExitCode::from(BROKEN))
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source in its own message and also reports it as its source.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "the event store is unavailable: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_message_names_each_cause_once() {
        let e = anyhow::Error::from(Repeats(std::io::Error::other("connection refused")))
            .context("opening the store");
        assert_eq!(
            message(&e),
            "opening the store: the event store is unavailable: connection refused"
        );
    }
}
