//! Running the binary.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use registro_domain::SchoolId;
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, NewEvent, StreamId,
};
use serde_json::json;
use time::OffsetDateTime;

/// A bound for waits that must end; reaching it is a failure, not a speed measure.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The binary, with no `REGISTRO_*` variable inherited from the caller's environment.
pub fn registro() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registro"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGISTRO_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("REGISTRO_LOG", "warn");
    cmd
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    registro()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run registro")
}

/// Registers `code` as Paola Preside, principal of `school`, with `registro add-person` on the
/// storage `storage` names (none: the SQLite file in `dir`).
pub fn add_principal(school: SchoolId, code: &str, dir: &str, storage: &[&str]) {
    let school = school.to_string();
    let mut args = vec![
        "add-person",
        "--school",
        &school,
        "--fiscal-code",
        code,
        "--family-name",
        "Preside",
        "--given-name",
        "Paola",
        "--role",
        "principal",
        "--data-dir",
        dir,
    ];
    args.extend(storage);
    let added = run(&args);
    assert!(added.status.success(), "{}", stderr(&added));
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A free local port (bound and released: a tiny window in which another process could take
/// it, acceptable for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `registro serve` process, killed if the test ends without stopping it.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `registro serve` with `args` on a free port and waits until /healthz answers.
    pub async fn start(args: &[&str]) -> Self {
        let mut cmd = registro();
        cmd.stdout(Stdio::null());
        Self::start_with(cmd, args).await
    }

    /// Starts `registro serve` with `args` and informational logs written to `log`.
    pub async fn start_logging_to(log: &Path, args: &[&str]) -> Self {
        let mut cmd = registro();
        cmd.env("REGISTRO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create the log file"));
        Self::start_with(cmd, args).await
    }

    /// Starts `registro serve` with `args`, its standard output written to `out`.
    pub async fn start_printing_to(out: &Path, args: &[&str]) -> Self {
        let mut cmd = registro();
        cmd.stdout(std::fs::File::create(out).expect("create the output file"));
        Self::start_with(cmd, args).await
    }

    /// Starts `cmd serve` with `args` (standard output inherited unless `cmd` redirects it):
    /// for a command with variables of its own.
    pub async fn start_command(cmd: Command, args: &[&str]) -> Self {
        Self::start_with(cmd, args).await
    }

    /// Starts `cmd serve` with `args` (standard output discarded and standard error inherited
    /// unless `cmd` redirects them).
    async fn start_with(mut cmd: Command, args: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = cmd
            .args(["serve", "--listen", &listen])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start registro serve");
        let mut server = Self {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await
                && r.status().is_success()
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("registro serve exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "registro serve did not answer in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "registro serve did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends `n` small events, one per append, to one stream of a new school.
pub async fn school_with_events(store: &dyn EventStore, n: usize) -> SchoolId {
    let school = SchoolId::new();
    for i in 0..n {
        store
            .append(AppendRequest {
                guards: Vec::new(),
                school,
                stream: StreamId::parse("class-3a-2025").unwrap(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::new(
                    EventType::parse("LessonSigned").unwrap(),
                    json!({"hour": i + 1, "topic": "Dante, Inferno I"}),
                    OffsetDateTime::now_utc(),
                )],
                metadata: CommandMetadata::system(),
                idempotency_key: None,
                command_digest: None,
            })
            .await
            .unwrap();
    }
    school
}

/// The embedded database of a data directory.
pub fn sqlite_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("registro.db")
}
