//! Command-line flags. Every flag has a `REGISTRO_*` environment fallback; the flag wins.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

/// registro: the event-sourced Italian school electronic register (registro elettronico).
#[derive(Debug, Parser)]
#[command(name = "registro", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log as JSON lines instead of text (logs go to standard error). The variable takes
    /// true/false, 1/0, yes/no or on/off.
    #[arg(
        long,
        env = "REGISTRO_LOG_JSON",
        global = true,
        value_parser = BoolishValueParser::new()
    )]
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
    /// Print a token of registro's local issuer (embedded mode, development, tests).
    Token(TokenArgs),
    /// Register a person in a school as the software itself: how a new school gets its first
    /// principal or secretary, who then register everyone else over the API.
    AddPerson(AddPersonArgs),
    /// Run projectors (read models built from the events) until stopped: one, or all of them.
    /// A second instance of a projector waits as a standby and takes over when the active one
    /// stops.
    Project(ProjectArgs),
    /// Rebuild projections from the first event: each is built into tables of its own apart
    /// from the live ones, then swapped in, in one transaction, so readers see the old view
    /// until then and the new one after, never a half-built one. A running projector of the same
    /// projection may keep running: it goes on from the rebuilt view. Shows a progress bar on a
    /// terminal, a line every few seconds otherwise, and prints a summary of each rebuild.
    /// Needs the role that owns the database (on PostgreSQL it creates a schema for the build).
    Rebuild(RebuildArgs),
    /// Export a school's whole log as CloudEvents NDJSON (docs/export-format.md), in constant
    /// memory, with its data subjects' keys beside it in a bundle encrypted with a passphrase.
    /// Shows its progress on a terminal.
    Export(ExportArgs),
    /// Import a school's export into this instance, which must not have the school: verifies the
    /// hash chain while loading, in one transaction (a break stops it, naming its school_seq,
    /// with nothing of the school written), then brings the projections up to it.
    Import(ImportArgs),
    /// Retention (rules.md section 7): `registro retention run --school <id>` erases the
    /// special-category details whose retention ended, by destroying their keys, and records
    /// each erasure; the history stays verifiable.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Generate a realistic school year into a new school, through the API's own commands (the
    /// office, the daily register, grades, justifications, notes, circulars and their receipts,
    /// meetings, the two terms' scrutini); the same seed gives the same school. Prints the new
    /// school's id, then a summary of what it wrote.
    Generate(GenerateArgs),
    /// Measure registro against PostgreSQL itself on the same server in the same run (appends,
    /// import, projection rebuilds, the family view over HTTP against `pgbench -S`, export) and
    /// print a Markdown table of the medians (docs/performance.md). Works in scratch databases
    /// of its own, dropped at the end.
    Bench(BenchArgs),
}

/// `registro bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A PostgreSQL server where this role may create databases: the URL of any of its
    /// databases.
    #[arg(long, env = "REGISTRO_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// `tiny` checks that every benchmark runs (seconds); `full` measures (minutes).
    #[arg(long, value_enum, default_value = "full")]
    pub size: crate::bench::Size,
    /// Runs of each measurement; the median is shown.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The data directory of a school made by `registro generate` (embedded store) to import,
    /// rebuild, serve and export; without it a small school is generated first.
    #[arg(long, requires = "school")]
    pub source_data_dir: Option<PathBuf>,
    /// That school's id.
    #[arg(long, requires = "source_data_dir")]
    pub school: Option<uuid::Uuid>,
    /// Also write the table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only these benchmarks (repeatable); the import they need runs anyway.
    #[arg(long, value_enum)]
    pub only: Vec<crate::bench::Bench>,
    /// The school year the source school was generated for (its `--year`), whose family view
    /// is read.
    #[arg(long, default_value_t = 2025)]
    pub year: i32,
}

/// `registro generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The school's name: with the seed, it gives the school's id.
    #[arg(long)]
    pub school: String,
    /// Students, spread over the classes.
    #[arg(long, default_value_t = 1000)]
    pub students: u32,
    /// Classes (1A..5A, 1B..5B, ...).
    #[arg(long, default_value_t = 45)]
    pub classes: u32,
    /// School days simulated (at most 200), spread over the school year.
    #[arg(long, default_value_t = 200)]
    pub days: u32,
    /// The seed every choice derives from.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The school year, by the year it starts in.
    #[arg(long, default_value_t = 2025)]
    pub year: i32,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro retention`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Erase now what the school no longer keeps.
    Run(RetentionArgs),
}

/// `registro retention run`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// The school.
    #[arg(long, env = "REGISTRO_SCHOOL")]
    pub school: uuid::Uuid,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The school to export.
    #[arg(long, env = "REGISTRO_SCHOOL")]
    pub school: uuid::Uuid,
    /// The NDJSON file to write (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// The key bundle to write, when the school has sealed data (default: the output's name
    /// with `.keys` added).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// The bundle's passphrase (at least 12 characters); or `--passphrase-file`.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The NDJSON file of an export.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The export's key bundle (needed when the school has sealed data).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// The bundle's passphrase.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// A key bundle's passphrase: from a file, or else from the environment variable
/// `REGISTRO_BUNDLE_PASSPHRASE` (never on the command line, where other users of the machine
/// could read it).
#[derive(Debug, Args)]
pub struct PassphraseArgs {
    /// A file whose first line is the passphrase (else `REGISTRO_BUNDLE_PASSPHRASE`).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// `registro rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The projection to rebuild (`audit`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Rebuild every projection, one after the other.
    #[arg(long)]
    pub all: bool,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro project`.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// The projection to run (`audit`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Run every projection.
    #[arg(long)]
    pub all: bool,
    /// The most events a projector applies in one transaction (with its checkpoint). Smaller
    /// batches commit more often; the result is the same.
    #[arg(
        long,
        env = "REGISTRO_PROJECT_BATCH",
        default_value_t = registro_projector::DEFAULT_BATCH,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub batch: usize,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Where the events live: the same flags for every subcommand that touches storage.
#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// Directory of the embedded store (`registro.db`, `master.key`) and of the local token
    /// issuer's key (`issuer.pem`); created if missing.
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
    /// Apply pending migrations at start (true/false, 1/0, yes/no, on/off); with `false`, start
    /// anyway and answer /readyz with 503 until `registro migrate` has run.
    #[arg(
        long,
        env = "REGISTRO_MIGRATE_ON_START",
        default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub migrate_on_start: bool,
    /// Create (or find) a small demo school and print a token for one person of each role.
    /// Uses the local token issuer; refused when an external identity provider is configured.
    #[arg(long, env = "REGISTRO_DEMO", value_parser = BoolishValueParser::new())]
    pub demo: bool,
    /// Serve even when PostgreSQL's row-level security does not hold registro's role (a
    /// superuser or a role with BYPASSRLS): schools are then kept apart by registro's queries
    /// alone. Without it, `serve` refuses to start on such a role.
    #[arg(long, env = "REGISTRO_ALLOW_RLS_BYPASS", value_parser = BoolishValueParser::new())]
    pub allow_rls_bypass: bool,
    /// Identity.
    #[command(flatten)]
    pub oidc: OidcArgs,
    /// Sustained reads a minute allowed per token holder; 0 turns the limit off.
    #[arg(long, env = "REGISTRO_READ_RATE_LIMIT", default_value_t = 300)]
    pub read_rate_limit: u32,
    /// Reads per token holder allowed at once above the sustained rate.
    #[arg(long, env = "REGISTRO_READ_BURST", default_value_t = 60)]
    pub read_burst: u32,
    /// An origin browsers may call the API from (`https://app.example.it`), repeatable or
    /// comma-separated; none: no cross-origin calls (CORS).
    #[arg(
        long = "cors-origin",
        env = "REGISTRO_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// The most mebibytes of family overviews kept to answer reads whose rows have not changed
    /// since (ADR 0035); 0 keeps none and computes every read.
    #[arg(long, env = "REGISTRO_OVERVIEW_CACHE_MIB", default_value_t = 16)]
    pub overview_cache_mib: usize,
    /// How long a read of a read model with `min_position` waits for it to include that
    /// position before answering 503 (milliseconds).
    #[arg(long, env = "REGISTRO_READ_WAIT_MS", default_value_t = 2000)]
    pub read_wait_ms: u64,
    /// A read model whose next event to apply was recorded longer ago than this (seconds) is
    /// reported `behind`, and /readyz `degraded`.
    #[arg(
        long,
        env = "REGISTRO_PROJECTION_LAG_DEGRADED_SECONDS",
        default_value_t = 60
    )]
    pub projection_lag_degraded_seconds: u64,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The OpenID Connect provider (the identity gateway in front of SPID, CIE and eIDAS). Without
/// an issuer, registro trusts only its local issuer (`registro token`).
#[derive(Debug, Args, Clone)]
pub struct OidcArgs {
    /// The provider's issuer (`iss`), e.g. `https://gateway.example.it`.
    #[arg(long, env = "REGISTRO_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// registro's client id at the provider: the `aud` tokens must carry. Required with an
    /// issuer.
    #[arg(long, env = "REGISTRO_OIDC_AUDIENCE", requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,
    /// Where the provider publishes its keys; found by OpenID Connect discovery when absent.
    #[arg(long, env = "REGISTRO_OIDC_JWKS_URL", requires = "oidc_issuer")]
    pub oidc_jwks_url: Option<String>,
    /// The claim that carries the fiscal code (SPID's `TINIT-` prefix is removed).
    #[arg(
        long,
        env = "REGISTRO_OIDC_FISCAL_CODE_CLAIM",
        default_value = "https://attributes.eid.gov.it/fiscal_number"
    )]
    pub oidc_fiscal_code_claim: String,
}

/// `registro add-person`.
#[derive(Debug, Args)]
pub struct AddPersonArgs {
    /// The school; a new school starts with its first person.
    #[arg(long, env = "REGISTRO_SCHOOL")]
    pub school: uuid::Uuid,
    /// The person's fiscal code (codice fiscale).
    #[arg(long)]
    pub fiscal_code: String,
    /// Cognome.
    #[arg(long)]
    pub family_name: String,
    /// Nome.
    #[arg(long)]
    pub given_name: String,
    /// The role: principal, secretary, teacher, guardian, student, auditor or admin.
    #[arg(long)]
    pub role: String,
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
    /// A head published earlier (the hash an earlier `verify` printed, 64 hex digits): the log
    /// must still hold it, so that nothing before it was removed or rewritten since.
    #[arg(long)]
    pub head: Option<String>,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `registro token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The school the token is for.
    #[arg(long, env = "REGISTRO_SCHOOL")]
    pub school: uuid::Uuid,
    /// The person's fiscal code (codice fiscale).
    #[arg(long, env = "REGISTRO_FISCAL_CODE")]
    pub fiscal_code: String,
    /// How long the token is valid: a number with s, m, h or d (at most 7d).
    #[arg(long, env = "REGISTRO_TOKEN_TTL", default_value = "1h")]
    pub ttl: Ttl,
    /// Directory holding the local issuer's key (`issuer.pem`), created if missing.
    #[arg(long, env = "REGISTRO_DATA_DIR", default_value = "./registro-data")]
    pub data_dir: PathBuf,
}

/// A token lifetime such as `90s`, `30m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub std::time::Duration);

/// The longest token lifetime.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

impl FromStr for Ttl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not like 90s, 30m, 1h or 7d"))?;
        let unit = match unit {
            "s" | "" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
        };
        let seconds = n.saturating_mul(unit);
        if seconds == 0 || seconds > MAX_TTL_SECONDS {
            return Err(format!("a token lives from 1s to 7d, not {s}"));
        }
        Ok(Self(std::time::Duration::from_secs(seconds)))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_parse_with_units_and_bounds() {
        assert_eq!("90s".parse::<Ttl>().unwrap().0.as_secs(), 90);
        assert_eq!("30m".parse::<Ttl>().unwrap().0.as_secs(), 1800);
        assert_eq!("1h".parse::<Ttl>().unwrap().0.as_secs(), 3600);
        assert_eq!("7d".parse::<Ttl>().unwrap().0.as_secs(), MAX_TTL_SECONDS);
        for bad in ["0s", "8d", "1w", "h", "-1h", "99999999999999999999d"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn switches_take_the_usual_spellings() {
        let parse = |args: &[&str]| {
            let mut all = vec!["registro", "serve"];
            all.extend_from_slice(args);
            let cli = Cli::try_parse_from(all).unwrap();
            let Command::Serve(serve) = cli.command else {
                panic!("not serve")
            };
            (cli.log_json, serve.migrate_on_start)
        };
        assert_eq!(parse(&[]), (false, true));
        assert_eq!(
            parse(&["--log-json", "--migrate-on-start", "0"]),
            (true, false)
        );
        assert_eq!(parse(&["--migrate-on-start", "off"]), (false, false));
        assert_eq!(parse(&["--migrate-on-start", "yes"]), (false, true));
        assert!(Cli::try_parse_from(["registro", "serve", "--migrate-on-start", "maybe"]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let cli = Cli::try_parse_from([
            "registro",
            "migrate",
            "--database-url",
            "postgres://registro:hunter2@db/registro",
            "--master-key",
            "c2VjcmV0",
        ])
        .unwrap();
        let printed = format!("{cli:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("c2VjcmV0"),
            "{printed}"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
