//! `registro bench`: the measurements behind `docs/performance.md`, each beside a reference
//! run on the same PostgreSQL in the same run, so that what is compared is registro's cost over
//! the database's, not one machine against another.
//!
//! - appends: single-event appends through the store, 16 writers on 16 schools, against a raw
//!   single-row `INSERT` loop with 16 connections, and against the floor: an append's writes
//!   alone (the event's row in a copy of the store's table, the school's head) in one statement;
//! - import: a generated school's export imported with chain verification, against the same
//!   rows in raw 100-row `INSERT`s;
//! - rebuild: the family view and the scrutiny report rebuilt from the imported log;
//! - family view over HTTP: 32 connections against the API serving the imported school, with
//!   and without the copies of overviews, against `pgbench -S` with 32 clients on the same
//!   server, and against the floor: a server doing one primary-key `SELECT` a request, read by
//!   the same client;
//! - export: the school's log written as NDJSON, from SQLite and from PostgreSQL.
//!
//! Every figure is the median of `--runs` runs. The benchmark works in databases of its own
//! (`registro_bench_<pid>_*`), which it creates on the server it is given and drops at the end.

// Rates and latencies of a report: never stored, never deciding anything.
#![expect(clippy::float_arithmetic, reason = "rates and latencies of a report")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use registro_api::auth::{KeySet, LocalIssuer, TokenVerifier};
use registro_domain::{PersonId, Role, SchoolId};
use registro_store::portable::Exporter;
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, MasterKey, NewEvent,
    StreamId,
};
use serde_json::json;

use crate::generate;

/// How big the benchmark's runs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// Seconds: checks that every benchmark runs (the test suite's size).
    Tiny,
    /// A few minutes.
    Full,
}

/// One of the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    /// Single-event appends against raw inserts.
    Appends,
    /// Import against raw 100-row inserts.
    Import,
    /// Projection rebuilds.
    Rebuild,
    /// The family view over HTTP against `pgbench -S`.
    Http,
    /// Export.
    Export,
}

/// What `registro bench` measures on.
#[derive(Debug)]
pub struct Options {
    /// A PostgreSQL server where this role may create databases (the URL of any database).
    pub server_url: String,
    /// The size.
    pub size: Size,
    /// Runs per measurement (the median is shown).
    pub runs: usize,
    /// A generated school to use: the data directory of `registro generate` and its id;
    /// without it a school of the size's is generated first.
    pub source: Option<(PathBuf, SchoolId)>,
    /// Where to write scratch files.
    pub scratch: PathBuf,
    /// The benchmarks to run; none: all.
    pub only: Vec<Bench>,
    /// The school year whose family view is read (the one the school was generated for).
    pub year: i32,
}

struct Params {
    writers: usize,
    appends_per_writer: usize,
    http_connections: usize,
    http_seconds: u64,
    pgbench_scale: u32,
    generated: generate::Sizes,
}

fn params(size: Size) -> Params {
    match size {
        Size::Tiny => Params {
            writers: 16,
            appends_per_writer: 20,
            http_connections: 32,
            http_seconds: 1,
            pgbench_scale: 1,
            generated: generate::Sizes {
                students: 20,
                classes: 2,
                days: 6,
                seed: 7,
                year: 2025,
            },
        },
        Size::Full => Params {
            writers: 16,
            appends_per_writer: 1000,
            http_connections: 32,
            http_seconds: 15,
            pgbench_scale: 10,
            generated: generate::Sizes {
                students: 200,
                classes: 9,
                days: 60,
                seed: 42,
                year: 2025,
            },
        },
    }
}

/// One line of the results.
#[derive(Debug)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// registro's figure.
    pub ours: String,
    /// The reference's figure, when there is one.
    pub reference: String,
    /// ours / reference, when both are rates.
    pub ratio: Option<String>,
    /// The target.
    pub target: &'static str,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

#[expect(clippy::cast_precision_loss, reason = "rates for a report")]
fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn ratio(ours: f64, reference: f64) -> String {
    format!("{:.2}x", ours / reference.max(1e-9))
}

/// The URL of database `db` on the server of `url`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).context("the server URL")?;
    parsed.set_path(&format!("/{db}"));
    Ok(parsed.to_string())
}

/// The scratch databases, dropped when the benchmark ends.
struct Databases {
    server: tokio_postgres::Client,
    server_url: String,
    prefix: String,
    made: Vec<String>,
}

impl Databases {
    async fn new(server_url: &str) -> anyhow::Result<Self> {
        let server = raw_client(server_url)
            .await
            .context("connecting to the PostgreSQL server")?;
        Ok(Self {
            server,
            server_url: server_url.to_owned(),
            prefix: format!("registro_bench_{}", std::process::id()),
            made: Vec::new(),
        })
    }

    /// A new empty database, and its URL.
    async fn create(&mut self, name: &str) -> anyhow::Result<String> {
        let db = format!("{}_{name}", self.prefix);
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            self.server
                .batch_execute(&sql)
                .await
                .with_context(|| format!("creating the database {db}"))?;
        }
        self.made.push(db.clone());
        with_database(&self.server_url, &db)
    }

    async fn drop_all(&mut self) {
        for db in std::mem::take(&mut self.made) {
            if let Err(e) = self
                .server
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await
            {
                tracing::warn!(database = db, error = %e, "cannot drop a scratch database");
            }
        }
    }
}

async fn pg_store(url: &str, connections: usize) -> anyhow::Result<Arc<dyn EventStore>> {
    let store = PgStore::connect(url, connections, MasterKey::generate()).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

async fn raw_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs every benchmark and returns the table's rows.
///
/// # Errors
/// When the server cannot be reached, a database cannot be made, `pgbench` is missing, or a
/// step fails.
pub async fn run(options: &Options, mut say: impl FnMut(&str)) -> anyhow::Result<Vec<Row>> {
    let p = params(options.size);
    let pgbench = pgbench_binary().context(
        "pgbench is needed (it comes with PostgreSQL's server package: apt-get install postgresql)",
    )?;
    let mut dbs = Databases::new(&options.server_url).await?;
    let result = run_all(options, &p, &pgbench, &mut dbs, &mut say).await;
    dbs.drop_all().await;
    result
}

async fn run_all(
    options: &Options,
    p: &Params,
    pgbench: &Path,
    dbs: &mut Databases,
    say: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<Row>> {
    let runs = options.runs.max(1);
    let wanted = |b: Bench| options.only.is_empty() || options.only.contains(&b);
    let mut rows = Vec::new();
    if wanted(Bench::Appends) {
        rows.extend(appends_against_inserts(p, runs, dbs, say).await?);
    }
    let on_the_school = [Bench::Import, Bench::Rebuild, Bench::Http, Bench::Export];
    if !on_the_school.into_iter().any(wanted) {
        return Ok(rows);
    }
    school_benchmarks(options, p, pgbench, dbs, say, &mut rows).await?;
    Ok(rows)
}

async fn appends_against_inserts(
    p: &Params,
    runs: usize,
    dbs: &mut Databases,
    say: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<Row>> {
    say("appends: 16 writers on 16 schools, against raw single-row inserts");
    let url = dbs.create("appends").await?;
    let store = pg_store(&url, p.writers * 2).await?;
    let raw = raw_client(&url).await?;
    raw.batch_execute(
        "CREATE TABLE bench_raw_appends (id bigserial PRIMARY KEY, school uuid NOT NULL, \
         stream text NOT NULL, version bigint NOT NULL, data text NOT NULL, \
         UNIQUE (stream, version))",
    )
    .await?;
    raw.batch_execute(FLOOR_TABLES).await?;
    let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        ours.push(appends(&store, p, run).await?);
        theirs.push(raw_appends(&url, p, run).await?);
        floor.push(floor_appends(&url, p, run).await?);
    }
    let (ours, theirs, floor) = (median(ours), median(theirs), median(floor));
    let reference = format!(
        "{theirs:.0} rows/s (single-row INSERT, {} connections)",
        p.writers
    );
    Ok(vec![
        Row {
            what: format!(
                "single-event appends, {} writers on {} schools",
                p.writers, p.writers
            ),
            ours: format!("{ours:.0} events/s ({} of the floor)", ratio(ours, floor)),
            reference: reference.clone(),
            ratio: Some(ratio(ours, theirs)),
            target: ">= 0.8x raw inserts",
        },
        Row {
            what: format!(
                "(floor: an append's writes alone, one statement each, {} writers)",
                p.writers
            ),
            ours: format!("{floor:.0} events/s"),
            reference,
            ratio: Some(ratio(floor, theirs)),
            target: "(what any append with this log's rows can reach)",
        },
    ])
}

/// Copies of the event store's tables for [`floor_appends`]: the same columns, defaults,
/// constraints and indexes (`LIKE ... INCLUDING ALL`), none of the store's rows.
const FLOOR_TABLES: &str = "CREATE TABLE bench_floor_events (LIKE events INCLUDING ALL); \
     CREATE TABLE bench_floor_heads (LIKE school_heads INCLUDING ALL)";

/// What an append writes, and nothing else: the event's row (every column and index of the
/// store's table, a chain hash over the previous hash and the data) and its school's head,
/// in one statement and one round trip a transaction, without the school's lock, the version
/// and head reads, the checks or the idempotency record. No implementation that keeps the log's
/// rows can append faster on this server: the floor of the appends' target.
async fn floor_appends(url: &str, p: &Params, run: usize) -> anyhow::Result<f64> {
    let clients = raw_clients(url, p.writers).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, client) in clients.into_iter().enumerate() {
        let n = p.appends_per_writer;
        tasks.spawn(async move {
            let append = client
                .prepare(
                    "WITH head AS (INSERT INTO bench_floor_heads (school_id, last_seq, last_hash) \
                     VALUES ($1, $3, $13) ON CONFLICT (school_id) DO UPDATE \
                     SET last_seq = excluded.last_seq, last_hash = excluded.last_hash) \
                     INSERT INTO bench_floor_events (school_id, stream_id, school_seq, \
                     stream_version, event_id, event_type, schema_version, data, actor_id, \
                     actor_role, correlation_id, occurred_at, recorded_at, prev_hash, hash) \
                     VALUES ($1, $2, $3, $3, $4, $5, 1, $6, $7, $8, $9, $10, $10, $11, $12)",
                )
                .await?;
            let school = uuid::Uuid::now_v7();
            let stream = format!("floor-{run}-{w}");
            let mut prev = registro_store::Hash([0; 32]);
            for i in 0..n {
                let data = registro_store::canonical::to_canonical_json(&payload(i))?;
                let hash = registro_store::canonical::chain_hash(&prev, &data);
                let seq = i64::try_from(i + 1)?;
                let now = time::OffsetDateTime::now_utc();
                client
                    .execute(
                        &append,
                        &[
                            &school,
                            &stream,
                            &seq,
                            &uuid::Uuid::now_v7(),
                            &"BenchEventAppended",
                            &data,
                            &uuid::Uuid::now_v7(),
                            &"teacher",
                            &uuid::Uuid::now_v7(),
                            &now,
                            &prev.0.as_slice(),
                            &hash.0.as_slice(),
                            &hash.0.as_slice(),
                        ],
                    )
                    .await?;
                prev = hash;
            }
            anyhow::Ok(())
        });
    }
    finished(tasks, p, started).await
}

/// Import, rebuilds, the family view over HTTP and export, on one generated school.
async fn school_benchmarks(
    options: &Options,
    p: &Params,
    pgbench: &Path,
    dbs: &mut Databases,
    say: &mut impl FnMut(&str),
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let wanted = |b: Bench| options.only.is_empty() || options.only.contains(&b);
    let runs = options.runs.max(1);

    // The school: given (a data directory of `registro generate`, opened with its master key),
    // or generated now into a scratch SQLite file.
    let (source, school): (Arc<dyn EventStore>, SchoolId) = if let Some((dir, school)) =
        &options.source
    {
        let key_file = dir.join("master.key");
        let key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        let key = MasterKey::parse(&key)
            .map_err(|e| anyhow::anyhow!("the master key in {}: {e}", key_file.display()))?;
        let store = SqliteStore::open(&dir.join("registro.db"), key).await?;
        (Arc::new(store), *school)
    } else {
        say("generating a school");
        let dir = options.scratch.join("generated");
        std::fs::create_dir_all(&dir)?;
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(&dir.join("registro.db"), MasterKey::generate()).await?);
        store.migrate().await?;
        let generated =
            generate::generate(Arc::clone(&store), "Liceo Bench", p.generated, |_, _| {}).await?;
        (store, generated.school)
    };

    say("export from SQLite");
    let file = options.scratch.join("school.ndjson");
    let mut sqlite_export = Vec::new();
    let mut events = 0;
    for _ in 0..runs {
        let (n, elapsed) = export(&source, school, &file).await?;
        events = n;
        sqlite_export.push(rate(n, elapsed));
    }
    let keys = source.subject_keys(school).await?;

    say("import with chain verification, against raw 100-row batch inserts");
    let lines = std::fs::read_to_string(&file)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut imported = None;
    let import_runs = if wanted(Bench::Import) { runs } else { 1 };
    for run in 0..import_runs {
        let url = dbs.create(&format!("import_{run}")).await?;
        let store = pg_store(&url, 16).await?;
        let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
        let started = Instant::now();
        registro_store::portable::import(
            store.as_ref(),
            reader,
            keys.clone(),
            Arc::new(AtomicU64::new(0)),
        )
        .await?;
        ours.push(rate(events, started.elapsed()));
        theirs.push(raw_batches(&url, &lines).await?);
        imported = Some(store);
    }
    let store = imported.context("no import ran")?;
    let (ours, theirs) = (median(ours), median(theirs));
    if wanted(Bench::Import) {
        rows.push(Row {
            what: format!("bulk import with chain verification ({events} events)"),
            ours: format!("{ours:.0} events/s"),
            reference: format!("{theirs:.0} rows/s (100-row INSERTs)"),
            ratio: Some(ratio(ours, theirs)),
            target: ">= 0.5x raw 100-row batches",
        });
    }

    for projection in [
        Arc::new(registro_projection_family::FamilyView) as Arc<dyn registro_projector::Projection>,
        Arc::new(registro_projection_scrutiny::ScrutinyReport),
        Arc::new(registro_projection_audit::AuditTrail),
    ] {
        let name = projection.schema().name;
        say(&format!("rebuild of {name}"));
        let projector = registro_projector::Projector::new(Arc::clone(&store), projection);
        let mut rates = Vec::new();
        // The HTTP benchmark reads the family view: it is built once even when rebuilds are
        // not measured.
        let rebuild_runs = if wanted(Bench::Rebuild) { runs } else { 1 };
        for _ in 0..rebuild_runs {
            let rebuilt = projector.rebuild(|_| {}).await?;
            rates.push(rate(rebuilt.events, rebuilt.elapsed));
        }
        if !wanted(Bench::Rebuild) {
            continue;
        }
        rows.push(Row {
            what: format!("projection rebuild: {name} ({events} events)"),
            ours: format!("{:.0} events/s", median(rates)),
            reference: String::new(),
            ratio: None,
            target: if name == "family" {
                ">= 50k events/s"
            } else {
                "(no target)"
            },
        });
    }

    if wanted(Bench::Http) {
        say("family view over HTTP, against pgbench -S");
        // The year of the school given, or of the one generated here.
        let year = if options.source.is_some() {
            options.year
        } else {
            p.generated.year
        };
        let default = registro_api::overview_cache::OverviewCache::DEFAULT_BYTES;
        let served = family_over_http(&store, school, year, p, default).await?;
        let cold = family_over_http(&store, school, year, p, 0).await?;
        let pgbench_url = dbs.create("pgbench").await?;
        let tps = run_pgbench(pgbench, &pgbench_url, p).await?;
        let floor = http_floor(&pgbench_url, p).await?;
        let line = |what: &str, (rps, p50, p99): (f64, f64, f64), target: &'static str| Row {
            what: format!("{what}, {} connections", p.http_connections),
            ours: format!(
                "{rps:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
                p50 * 1e3,
                p99 * 1e3
            ),
            reference: format!("{tps:.0} tps (pgbench -S, {} clients)", p.http_connections),
            ratio: Some(ratio(rps, tps)),
            target,
        };
        rows.push(line(
            "family view over HTTP",
            served,
            ">= 0.3x pgbench -S; p99 <= 10 ms",
        ));
        rows.push(line(
            "(the same, every overview computed: no copies kept)",
            cold,
            "(no target)",
        ));
        rows.push(line(
            "(floor: HTTP and one primary-key SELECT a request)",
            floor,
            "(what any HTTP read can reach)",
        ));
    }
    if !wanted(Bench::Export) {
        return Ok(());
    }

    say("export from PostgreSQL");
    let mut pg_export = Vec::new();
    for _ in 0..runs {
        let (n, elapsed) = export(&store, school, &file).await?;
        pg_export.push(rate(n, elapsed));
    }
    rows.push(Row {
        what: format!("export, SQLite ({events} events)"),
        ours: format!("{:.0} events/s", median(sqlite_export)),
        reference: String::new(),
        ratio: None,
        target: ">= 200k events/s",
    });
    rows.push(Row {
        what: format!("export, PostgreSQL ({events} events)"),
        ours: format!("{:.0} events/s", median(pg_export)),
        reference: String::new(),
        ratio: None,
        target: ">= 200k events/s",
    });
    drop(store);
    Ok(())
}

/// One run of `writers` tasks each appending single events to its own school's stream.
async fn appends(store: &Arc<dyn EventStore>, p: &Params, run: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..p.writers {
        let store = Arc::clone(store);
        let n = p.appends_per_writer;
        tasks.spawn(async move {
            let school = SchoolId::new();
            let stream = StreamId::parse(format!("bench-{run}-{w}"))?;
            let kind = EventType::parse("BenchEventAppended")?;
            for i in 0..n {
                let event =
                    NewEvent::new(kind.clone(), payload(i), time::OffsetDateTime::now_utc());
                store
                    .append(AppendRequest {
                        school,
                        stream: stream.clone(),
                        expected: if i == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exact(u64::try_from(i)?)
                        },
                        guards: Vec::new(),
                        events: vec![event],
                        metadata: CommandMetadata::by(PersonId::new(), Role::Teacher),
                        idempotency_key: None,
                        command_digest: None,
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    finished(tasks, p, started).await
}

/// Waits for the writers; their events a second since `started`.
async fn finished(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    p: &Params,
    started: Instant,
) -> anyhow::Result<f64> {
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(rate(
        u64::try_from(p.writers * p.appends_per_writer)?,
        started.elapsed(),
    ))
}

/// The data of a benchmark's `i`th event: about a grade's size.
fn payload(i: usize) -> serde_json::Value {
    json!({"student": PersonId::new(), "subject": "Matematica", "mark": "7½",
        "date": "2025-10-06", "n": i})
}

/// The same number of single-row inserts, each its own transaction, `writers` connections.
async fn raw_appends(url: &str, p: &Params, run: usize) -> anyhow::Result<f64> {
    let clients = raw_clients(url, p.writers).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, client) in clients.into_iter().enumerate() {
        let n = p.appends_per_writer;
        tasks.spawn(async move {
            let insert = client
                .prepare(
                    "INSERT INTO bench_raw_appends (school, stream, version, data) \
                     VALUES ($1, $2, $3, $4)",
                )
                .await?;
            let school = uuid::Uuid::now_v7();
            let stream = format!("raw-{run}-{w}");
            for i in 0..n {
                let data = payload(i).to_string();
                let version = i64::try_from(i)?;
                client
                    .execute(&insert, &[&school, &stream, &version, &data])
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    finished(tasks, p, started).await
}

/// `n` plain connections to `url`.
async fn raw_clients(url: &str, n: usize) -> anyhow::Result<Vec<tokio_postgres::Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(raw_client(url).await?);
    }
    Ok(clients)
}

/// The export's event lines inserted in 100-row `INSERT`s (each its own transaction); rows a
/// second.
async fn raw_batches(url: &str, lines: &str) -> anyhow::Result<f64> {
    let client = raw_client(url).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_raw_import (seq bigint PRIMARY KEY, \
             stream text NOT NULL, version bigint NOT NULL, type text NOT NULL, \
             data text NOT NULL, hash text NOT NULL, UNIQUE (stream, version)); \
             TRUNCATE bench_raw_import",
        )
        .await?;
    let mut rows = Vec::new();
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v.get("schoolseq").is_none() {
            continue;
        }
        rows.push((
            v["schoolseq"].as_i64().unwrap_or(0),
            v["streamid"].as_str().unwrap_or_default().to_owned(),
            v["streamversion"].as_i64().unwrap_or(0),
            v["type"].as_str().unwrap_or_default().to_owned(),
            v["data"].to_string(),
            v["hash"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let full = client
        .prepare(&batch_insert(100))
        .await
        .context("preparing the 100-row insert")?;
    let started = Instant::now();
    for chunk in rows.chunks(100) {
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        for (seq, stream, version, kind, data, hash) in chunk {
            params.extend([
                seq as &(dyn tokio_postgres::types::ToSql + Sync),
                stream,
                version,
                kind,
                data,
                hash,
            ]);
        }
        if chunk.len() == 100 {
            client.execute(&full, &params).await?;
        } else {
            client
                .execute(batch_insert(chunk.len()).as_str(), &params)
                .await?;
        }
    }
    Ok(rate(u64::try_from(rows.len())?, started.elapsed()))
}

fn batch_insert(n: usize) -> String {
    let values: Vec<String> = (0..n)
        .map(|i| {
            let b = i * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            )
        })
        .collect();
    format!(
        "INSERT INTO bench_raw_import (seq, stream, version, type, data, hash) VALUES {}",
        values.join(", ")
    )
}

/// Writes the school's export to `file`; the events written and the time taken.
async fn export(
    store: &Arc<dyn EventStore>,
    school: SchoolId,
    file: &Path,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut exporter = Exporter::new(Arc::clone(store), school, registro_api::SOFTWARE).await?;
    while let Some(chunk) = exporter.next_chunk().await? {
        out.write_all(chunk.as_bytes())?;
    }
    out.flush()?;
    Ok((exporter.events_written(), started.elapsed()))
}

/// Serves the API on the store (projections rebuilt) and reads the family view of random
/// students as their guardians, on `http_connections` connections for `http_seconds`:
/// requests a second, p50 and p99 in seconds.
async fn family_over_http(
    store: &Arc<dyn EventStore>,
    school: SchoolId,
    year: i32,
    p: &Params,
    overview_cache_bytes: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let directory = registro_api::directory::load(store.as_ref(), school).await?;
    let issuer = LocalIssuer::generate();
    let mut targets = Vec::new();
    for (id, person) in directory.people() {
        if !person.roles.contains(&Role::Guardian) {
            continue;
        }
        let token = issuer.issue(school, &person.fiscal_code, Duration::from_secs(3600))?;
        for student in directory.students_of(id) {
            targets.push((
                format!("/schools/{school}/students/{student}/years/{year}/family"),
                token.clone(),
            ));
        }
    }
    if targets.is_empty() {
        bail!("the school has no guardians to read as");
    }
    let verifier = TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(issuer))),
    );
    let app = registro_api::build(
        registro_api::ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            local_jwks: None,
            verifier,
            read_limit: registro_api::ratelimit::RateLimit::OFF,
            today: None,
            cors_origins: Vec::new(),
            overview_cache_bytes,
            projections: registro_api::ProjectionConfig {
                names: vec!["family".into(), "scrutiny".into(), "audit".into()],
                read_wait: Duration::from_secs(2),
                degraded_after: Duration::from_secs(60),
            },
        },
        Arc::clone(store),
    )
    .await?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let targets = Arc::new(targets);
    // A warm-up: every student's view once.
    let client = reqwest::Client::new();
    for (path, token) in targets.iter() {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
    }
    let measured = load(&base, targets, p).await;
    let _ = stop.send(());
    server.await??;
    measured
}

/// Reads `targets` (path and bearer token) round the list from `http_connections` connections
/// for `http_seconds`: requests a second, p50 and p99 in seconds. Every answer must be a 2xx.
async fn load(
    base: &str,
    targets: Arc<Vec<(String, String)>>,
    p: &Params,
) -> anyhow::Result<(f64, f64, f64)> {
    let until = Instant::now() + Duration::from_secs(p.http_seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..p.http_connections {
        let targets = Arc::clone(&targets);
        let base = base.to_owned();
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies = Vec::new();
            let mut i = c;
            while Instant::now() < until {
                let (path, token) = &targets[i % targets.len()];
                i += 7;
                let started = Instant::now();
                let r = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(token)
                    .send()
                    .await?;
                let ok = r.status().is_success();
                r.bytes().await?;
                if !ok {
                    bail!("GET {path} failed");
                }
                latencies.push(started.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        });
    }
    let started = Instant::now();
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    all.sort_by(f64::total_cmp);
    let at = |q: usize| all.get((all.len() * q / 100).min(all.len().saturating_sub(1)));
    Ok((
        rate(u64::try_from(all.len())?, elapsed),
        at(50).copied().unwrap_or(0.0),
        at(99).copied().unwrap_or(0.0),
    ))
}

/// The HTTP floor: a server doing for each request only what `pgbench -S` does (one
/// primary-key `SELECT` of `pgbench_accounts`, on one of 16 connections, which the requests
/// share by pipelining where registro's pool lends each to one request at a time), answering
/// its row as JSON, read by the same client as the family view with the same
/// connections. What no HTTP read of this server's rows can beat on this machine, whatever it
/// serves; `pgbench_url` is a database `pgbench -i` filled.
async fn http_floor(pgbench_url: &str, p: &Params) -> anyhow::Result<(f64, f64, f64)> {
    use axum::extract::{Path as UrlPath, State};

    type Clients = Arc<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>>;
    async fn account(
        State((clients, next)): State<(Clients, Arc<AtomicU64>)>,
        UrlPath(aid): UrlPath<i32>,
    ) -> Result<axum::Json<serde_json::Value>, axum::http::StatusCode> {
        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (client, select) = usize::try_from(at)
            .ok()
            .and_then(|at| clients.get(at % clients.len()))
            .ok_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)?;
        let row = client
            .query_one(select, &[&aid])
            .await
            .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)?;
        let balance: i32 = row.get(0);
        Ok(axum::Json(json!({ "aid": aid, "abalance": balance })))
    }

    let mut clients = Vec::new();
    for client in raw_clients(pgbench_url, 16).await? {
        // As a pool's cached statement: parsed once per connection, one round trip a read.
        let select = client
            .prepare("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
            .await?;
        clients.push((client, select));
    }
    let router = axum::Router::new()
        .route("/accounts/{aid}", axum::routing::get(account))
        .with_state((Arc::new(clients), Arc::new(AtomicU64::new(0))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    let accounts = 100_000 * u64::from(p.pgbench_scale);
    let targets: Vec<(String, String)> = (0..10_000_u64)
        .map(|i| {
            (
                format!("/accounts/{}", 1 + i * 7919 % accounts),
                String::new(),
            )
        })
        .collect();
    let measured = load(&base, Arc::new(targets), p).await;
    let _ = stop.send(());
    server.await??;
    measured
}

fn pgbench_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pgbench"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/pgbench"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

/// `pgbench -i` then `pgbench -S` with as many clients as the HTTP run's connections; its
/// transactions a second.
async fn run_pgbench(pgbench: &Path, url: &str, p: &Params) -> anyhow::Result<f64> {
    // The password goes in the environment, not on the command line where others can read it.
    let mut parsed = url::Url::parse(url)?;
    let password = parsed.password().map(str::to_owned);
    let _ = parsed.set_password(None);
    let url = parsed.to_string();
    let url = url.as_str();
    let run = |args: Vec<String>| {
        let pgbench = pgbench.to_owned();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(pgbench);
            if let Some(password) = password {
                command.env("PGPASSWORD", password);
            }
            command.args(args).output()
        })
    };
    let init = run(vec![
        "-i".into(),
        "-q".into(),
        "-s".into(),
        p.pgbench_scale.to_string(),
        url.to_owned(),
    ])
    .await??;
    if !init.status.success() {
        bail!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    }
    let out = run(vec![
        "-S".into(),
        "-n".into(),
        "-c".into(),
        p.http_connections.to_string(),
        "-j".into(),
        "2".into(),
        "-T".into(),
        p.http_seconds.to_string(),
        url.to_owned(),
    ])
    .await??;
    if !out.status.success() {
        bail!("pgbench -S: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

/// The machine, for the table's heading: CPU model, cores, memory, PostgreSQL's version.
pub async fn machine(server_url: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{} GiB", kb / (1024 * 1024)))
        })
        .unwrap_or_default();
    let version = match raw_client(server_url).await {
        Ok(c) => c
            .query_one("SHOW server_version", &[])
            .await
            .ok()
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    format!("{cpu}, {cores} cores, {memory}, PostgreSQL {version}")
}

/// The rows as a Markdown table.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| what | registro | reference | ratio | target |\n|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.what,
            r.ours,
            r.reference,
            r.ratio.as_deref().unwrap_or(""),
            r.target
        ));
    }
    out
}

/// The sizes of a run, for the table's heading.
#[must_use]
pub fn sizes_line(size: Size, runs: usize) -> String {
    let p = params(size);
    format!(
        "median of {runs} runs; {} appends per writer; HTTP and pgbench {} s each with {} \
         connections; pgbench scale {}",
        p.appends_per_writer, p.http_seconds, p.http_connections, p.pgbench_scale
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_names_the_scratch_database() {
        assert_eq!(
            with_database(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "x"
            )
            .unwrap(),
            "postgres://u:p@127.0.0.1:5432/x?sslmode=disable"
        );
    }

    #[test]
    fn a_hundred_row_insert_numbers_its_parameters() {
        let sql = batch_insert(2);
        assert!(sql.ends_with("($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)"));
    }

    #[test]
    fn the_median_is_the_middle_run() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
    }
}
