//! `registro generate` and `registro bench` at a tiny size: the generated school verifies, the
//! same seed gives the same events, and every benchmark runs (nothing is asserted about speed).

use registro_testkit::TempDir;

use crate::support::{run, sqlite_file, stderr, stdout};

/// Runs `registro generate` for a tiny school into `dir`.
fn run_generate(dir: &str, seed: &str) -> std::process::Output {
    run(&[
        "generate",
        "--school",
        "Liceo di prova",
        "--students",
        "16",
        "--classes",
        "2",
        "--days",
        "8",
        "--seed",
        seed,
        "--data-dir",
        dir,
    ])
}

/// Generates a tiny school into `dir`; its id and the summary printed.
fn generate(dir: &str, seed: &str) -> (String, String) {
    let out = run_generate(dir, seed);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let school = printed
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("school "))
        .unwrap_or_else(|| panic!("no school in {printed}"))
        .to_owned();
    let summary: Vec<&str> = printed
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("took"))
        .collect();
    (school, summary.join("\n"))
}

/// Every event of the file: its stream, version, type, and data unless sealed (sealed data is
/// encrypted with a fresh nonce each time).
fn events(data_dir: &std::path::Path) -> Vec<(String, i64, String, String)> {
    let db = rusqlite::Connection::open(sqlite_file(data_dir)).unwrap();
    let mut statement = db
        .prepare(
            "SELECT stream_id, stream_version, event_type, data FROM events ORDER BY school_seq",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            let data: String = r.get(3)?;
            let data = if data.contains("$sealed") {
                String::from("(sealed)")
            } else {
                data
            };
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, data))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_generated_school_verifies_and_the_same_seed_gives_the_same_events() {
    let (a, b, c) = (TempDir::new(), TempDir::new(), TempDir::new());
    let dir = |d: &TempDir| d.path().to_str().unwrap().to_owned();
    let (school, summary) = generate(&dir(&a), "3");
    for what in [
        "lesson signed",
        "absence",
        "justification",
        "grade",
        "grades (class test)",
        "receipt",
        "meeting booked",
        "scrutinio deliberation",
        "scrutinio outcome",
    ] {
        assert!(summary.contains(what), "{what} missing from {summary}");
    }
    let verified = run(&["verify", "--school", &school, "--data-dir", &dir(&a)]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).starts_with("OK "),
        "{}",
        stdout(&verified)
    );

    let (again, same) = generate(&dir(&b), "3");
    assert_eq!((&again, &same), (&school, &summary));
    let (first, second) = (events(a.path()), events(b.path()));
    assert!(first.len() > 1000, "{} events", first.len());
    assert_eq!(first, second);

    let (other, _) = generate(&dir(&c), "4");
    assert_ne!(other, school);
    let third = events(c.path());
    assert_ne!(
        first.iter().map(|e| &e.3).collect::<Vec<_>>(),
        third.iter().map(|e| &e.3).collect::<Vec<_>>()
    );

    // Generating the same school again into the same store is refused, not doubled.
    let out = run_generate(&dir(&a), "3");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
}

/// The scratch databases of benchmarks on the server (an interrupted run leaves its own).
async fn scratch_databases(server: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'registro\\_bench\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_benchmark_runs_at_the_tiny_size() {
    let server = registro_testkit::pg::server_url().await.unwrap();
    let before = scratch_databases(&server).await;
    let out = run(&[
        "bench",
        "--size",
        "tiny",
        "--runs",
        "1",
        "--database-url",
        &server,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for row in [
        "single-event appends",
        "bulk import with chain verification",
        "projection rebuild: family",
        "projection rebuild: scrutiny",
        "family view over HTTP",
        "pgbench -S",
        "export, SQLite",
        "export, PostgreSQL",
    ] {
        assert!(table.contains(row), "{row} missing from {table}");
    }
    // Its scratch databases are gone.
    assert_eq!(scratch_databases(&server).await, before);
}
