//! A real PostgreSQL for tests; see the crate documentation for where it comes from.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use registro_store::migrate::POSTGRES;
use registro_store::postgres::PgStore;
use registro_store::{EventStore as _, MasterKey, ProjectionSchema};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// The local server tried when `DATABASE_URL` is not set.
pub const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Set to `1` to skip the local server and use the private cluster (to test that path).
pub const FORCE_PRIVATE: &str = "REGISTRO_TEST_PRIVATE_PG";

/// The ordinary login role that tests connect as to be held by row-level security, as registro
/// is in production: no superuser, no `BYPASSRLS` (both ignore row-level security, even when
/// forced), not the tables' owner. Roles belong to the whole server, so it is created once per
/// server, by whichever test asks first, and never dropped; it owns nothing, and what it is
/// granted goes away with each test database.
pub const APP_ROLE: &str = "registro_test_app";

/// [`APP_ROLE`]'s password, for servers that ask for one (tests only: the role can reach
/// nothing but the test databases that grant it something).
const APP_PASSWORD: &str = "registro_test_app";

static SERVER: OnceCell<String> = OnceCell::const_new();

const HOW_TO_INSTALL: &str = "PostgreSQL is needed for the integration tests. Install it \
    (Debian/Ubuntu: `sudo apt-get install postgresql`), or set DATABASE_URL to a server where \
    the user may create databases. `./scripts/test` does this for you.";

/// A database of its own for one test, cloned from the migrated template; dropped (with
/// `WITH (FORCE)`) when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// Creates a migrated database for one test.
    ///
    /// # Panics
    /// When no PostgreSQL can be found or started, with instructions.
    pub async fn new() -> Self {
        match Self::try_new().await {
            Ok(db) => db,
            Err(e) => panic!("{e:#}\n\n{HOW_TO_INSTALL}"),
        }
    }

    async fn try_new() -> anyhow::Result<Self> {
        let admin_url = server_url().await?;
        let template = template(&admin_url).await?;
        let name = format!("registro_test_{}", uuid::Uuid::now_v7().simple());
        let admin = connect(&admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .with_context(|| format!("creating test database {name} from {template}"))?;
        let url = with_database(&admin_url, &name);
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// A new test database, a copy of this one as it is now (`CREATE DATABASE ... TEMPLATE`),
    /// dropped like the others: for a reference to compare with after this one has been worked
    /// on. PostgreSQL copies only a database nobody is connected to, so call it when nothing of
    /// the test uses this one (drop its stores and clients first); sessions that linger a
    /// moment after being closed are ended.
    ///
    /// # Panics
    /// When the copy cannot be made (a session of this database stays connected).
    pub async fn duplicate(&self) -> Self {
        match self.try_duplicate().await {
            Ok(db) => db,
            Err(e) => panic!("copying the test database {}: {e:#}", self.name),
        }
    }

    async fn try_duplicate(&self) -> anyhow::Result<Self> {
        let name = format!("registro_test_{}", uuid::Uuid::now_v7().simple());
        let admin = connect(&self.admin_url).await?;
        let mut attempts = 0;
        loop {
            // A closed client's session ends asynchronously: end those still there.
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&self.name],
                )
                .await?;
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {}", self.name))
                .await
            {
                Ok(()) => break,
                // 55006 object_in_use: a session was still connected.
                Err(e)
                    if attempts < 50
                        && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context(format!("creating {name} from {}", self.name)),
            }
        }
        Ok(Self {
            admin_url: self.admin_url.clone(),
            url: with_database(&self.admin_url, &name),
            name,
        })
    }

    /// The database's URL, for the server's administrator (usually a superuser, which row-level
    /// security never holds).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on this database with a fresh master key.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn store(&self) -> PgStore {
        self.store_with_key(MasterKey::generate()).await
    }

    /// A store on this database with the given master key.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn store_with_key(&self, key: MasterKey) -> PgStore {
        PgStore::connect(&self.url, 20, key)
            .await
            .expect("connect to the test database")
    }

    /// A plain client on this database, for tests that look under the store: the
    /// administrator, with `registro.all_schools` on for the session, so that it sees and may
    /// change every school's rows even when the administrator is not a superuser but the tables'
    /// owner (whom migration 0002 holds). [`TestDb::app_client`] is one that row-level security
    /// holds.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&with_all_schools(&self.url))
            .await
            .expect("connect to the test database")
    }

    /// The URL of this database for [`APP_ROLE`], an ordinary role that row-level security
    /// holds. Creates the role if the server has none yet (safely while other tests do the
    /// same), and grants it what the store needs on this database's tables and sequences:
    /// `SELECT`, `INSERT`, `UPDATE` (no `DELETE`, `TRUNCATE` or DDL).
    ///
    /// # Panics
    /// If the role cannot be created or granted (the administrator needs `CREATEROLE`), or if
    /// a role of that name exists and is a superuser or has `BYPASSRLS`.
    pub async fn app_url(&self) -> String {
        match self.grant_app_role().await {
            Ok(()) => with_database(
                &with_user(&self.admin_url, APP_ROLE, APP_PASSWORD),
                &self.name,
            ),
            Err(e) => panic!("preparing the role {APP_ROLE}: {e:#}"),
        }
    }

    /// A store on this database connected as [`APP_ROLE`], with `projection`'s tables prepared
    /// by the administrator (the ordinary role may not create tables) and granted to the role
    /// for the projector's writes, as in production.
    ///
    /// # Panics
    /// If the tables cannot be prepared or granted, or the store cannot connect.
    pub async fn app_store_with_projection(&self, projection: &ProjectionSchema) -> PgStore {
        self.store()
            .await
            .prepare_projection(projection)
            .await
            .expect("prepare the projection's tables");
        // Makes the ordinary role, if this server has none yet.
        self.app_url().await;
        self.client()
            .await
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {APP_ROLE}",
                projection.tables.join(", ")
            ))
            .await
            .expect("grant the projection's tables");
        self.app_store_with_key(crate::master_key()).await
    }

    /// A store on this database connected as [`APP_ROLE`], with the given master key.
    ///
    /// # Panics
    /// If the role cannot be prepared or the store cannot connect.
    pub async fn app_store_with_key(&self, key: MasterKey) -> PgStore {
        PgStore::connect(&self.app_url().await, 20, key)
            .await
            .expect("connect to the test database as the application role")
    }

    /// A plain client on this database connected as [`APP_ROLE`].
    ///
    /// # Panics
    /// If the role cannot be prepared or the client cannot connect.
    pub async fn app_client(&self) -> tokio_postgres::Client {
        connect(&self.app_url().await)
            .await
            .expect("connect to the test database as the application role")
    }

    async fn grant_app_role(&self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        // Concurrent tests may create it at the same moment: the loser gets duplicate_object,
        // or unique_violation on the catalogue's index; either way the role is there.
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN
                     CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'
                         NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END $$"
            ))
            .await
            .context("creating the role")?;
        let privileged: bool = admin
            .query_one(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&APP_ROLE],
            )
            .await?
            .get(0);
        if privileged {
            bail!(
                "the role {APP_ROLE} exists and is a superuser or has BYPASSRLS, which row-level \
                 security does not hold: drop it, the tests recreate it"
            );
        }
        connect(&self.url)
            .await?
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {APP_ROLE};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE};"
            ))
            .await
            .context("granting it the tables of the test database")?;
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(admin) = connect(&admin_url).await {
                        let _ = admin
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// The URL of the server tests use (see the crate documentation), found once per process.
///
/// # Errors
/// When no server can be found or started.
pub async fn server_url() -> anyhow::Result<String> {
    SERVER
        .get_or_try_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                connect(&url)
                    .await
                    .with_context(|| "DATABASE_URL is set but its server does not answer")?;
                return Ok(url);
            }
            let forced_private = std::env::var_os(FORCE_PRIVATE).is_some_and(|v| v == "1");
            if !forced_private && connect(LOCAL_SERVER).await.is_ok() {
                return Ok(LOCAL_SERVER.to_owned());
            }
            tokio::task::spawn_blocking(private_cluster).await?
        })
        .await
        .cloned()
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse().context("parsing the database URL")?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        let safe = url.split('@').next_back().unwrap_or("?");
        format!("connecting to PostgreSQL at {safe}")
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database name replaced by `db`.
#[must_use]
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// `url` with `registro.all_schools` on for every session it opens: such a connection works
/// across schools under row-level security (migration 0002).
fn with_all_schools(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20registro.all_schools%3Don")
}

/// `url` with its user and password replaced by `user` and `password` (URL-safe, unescaped).
#[must_use]
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{}{user}:{password}@{host}", &url[..authority_start])
}

/// Creates (once, under an advisory lock, for this migration set) the migrated template and
/// returns its name.
async fn template(admin_url: &str) -> anyhow::Result<String> {
    let mut digest = String::new();
    for m in POSTGRES {
        digest.push_str(&m.checksum());
    }
    let tag =
        registro_store::canonical::chain_hash(&registro_store::Hash::GENESIS, &digest).to_hex();
    let name = format!("registro_tpl_{}", &tag[..16]);
    let admin = connect(admin_url).await?;
    admin
        .execute("SELECT pg_advisory_lock(7265676973747231)", &[])
        .await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await?;
        {
            let store = PgStore::connect(
                &with_database(admin_url, &building),
                2,
                MasterKey::generate(),
            )
            .await
            .context("connecting to the template database")?;
            store
                .migrate()
                .await
                .context("migrating the template database")?;
        }
        // The store's connections close asynchronously; end any that linger.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&building],
            )
            .await?;
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await?;
    }
    admin
        .execute("SELECT pg_advisory_unlock(7265676973747231)", &[])
        .await?;
    Ok(name)
}

/// How a test cluster is made: the superuser `postgres`, trusted on the local machine.
const INITDB: [&str; 7] = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"];

/// The private cluster's directory; `scripts/test` stops it after the suite.
#[must_use]
pub fn private_cluster_dir() -> PathBuf {
    std::env::temp_dir().join("registro-test-pg")
}

/// Starts (or finds running) a throwaway cluster under [`private_cluster_dir`], shared by all
/// test processes of this machine, and returns its URL.
fn private_cluster() -> anyhow::Result<String> {
    let dir = private_cluster_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = File::create(dir.join("lock"))?;
    lock.lock()
        .context("locking the private cluster directory")?;
    let data = dir.join("data");
    let port_file = dir.join("port");
    let bin = pg_bin_dir().context("no initdb found on PATH or under /usr/lib/postgresql/*/bin")?;
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if as_root {
        // Only the directory itself (the server writes its log and socket there): a recursive
        // chown would race with the files of running tests.
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
    }
    let pg = |tool: &str| {
        let exe = bin.join(tool);
        if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    };
    if !data.join("PG_VERSION").exists() {
        run(pg("initdb").arg("-D").arg(&data).args(INITDB))?;
    }
    let running = pg("pg_ctl")
        .arg("status")
        .arg("-D")
        .arg(&data)
        .output()?
        .status
        .success();
    if !running || !port_file.exists() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        run(pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]))?;
        std::fs::write(&port_file, port.to_string())?;
    }
    let port = std::fs::read_to_string(&port_file)?;
    Ok(format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        port.trim()
    ))
}

fn pg_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        versions.sort_by_key(|p| {
            p.parent()
                .and_then(Path::file_name)
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        versions.pop()
    })
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{with_database, with_user};

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t2"),
            "postgres://u@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t3"),
            "postgres://u@h:1/t3"
        );
    }

    #[test]
    fn users_are_replaced_in_urls() {
        assert_eq!(
            with_user("postgres://postgres@127.0.0.1:5432/postgres", "a", "b"),
            "postgres://a:b@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            with_user("postgres://u:p@w@h/db?sslmode=disable", "a", "b"),
            "postgres://a:b@h/db?sslmode=disable"
        );
        assert_eq!(
            with_user("postgresql://h:1", "a", "b"),
            "postgresql://a:b@h:1"
        );
        assert_eq!(
            with_user("postgres://h?x=@", "a", "b"),
            "postgres://a:b@h?x=@"
        );
    }
}

/// A PostgreSQL cluster of one test's own, which the test may stop, crash and start again
/// (fault tests); removed, stopped first, when dropped. Its server runs with the defaults that
/// matter for durability (`fsync` and `synchronous_commit` on).
#[derive(Debug)]
pub struct OwnCluster {
    dir: PathBuf,
    port: u16,
    as_root: bool,
    bin: PathBuf,
}

impl OwnCluster {
    /// Makes (`initdb`) and starts a new cluster on a free port.
    ///
    /// # Panics
    /// When `initdb` or `pg_ctl` cannot be found or fail.
    #[must_use]
    pub fn start() -> Self {
        let bin = pg_bin_dir().expect(
            "a test of its own cluster needs PostgreSQL's server tools (initdb, pg_ctl) on this \
             machine, even when DATABASE_URL names a server: `sudo apt-get install postgresql`",
        );
        let dir = std::env::temp_dir().join(format!("registro-own-pg-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("creating the cluster's directory");
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if as_root {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))
                .expect("giving the cluster's directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            dir,
            port,
            as_root,
            bin,
        };
        run(cluster
            .pg("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(INITDB))
        .expect("initdb");
        cluster.start_server();
        cluster
    }

    /// Its URL, as the superuser `postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint; the next
    /// start replays the write-ahead log).
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn crash(&self) {
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]))
        .expect("pg_ctl stop");
    }

    /// Starts the server again on the same port.
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port,
            self.dir.display()
        );
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]))
        .expect("pg_ctl start");
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A name no other test process picks at the same time.
fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
