//! `registro serve` on a fresh machine, as the README promises.

use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;

use crate::support::{Server, run, stderr};

/// GETs `path` and returns the status, the content type and the body.
async fn get(server: &Server, path: &str) -> (u16, String, String) {
    let r = reqwest::get(format!("{}{path}", server.base))
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, r.text().await.unwrap())
}

/// With nothing configured but where to listen and keep data, `serve` starts on the embedded
/// default, answers its operational endpoints, and stops cleanly on SIGTERM.
#[tokio::test]
async fn serve_starts_on_the_embedded_default_and_stops_on_sigterm() {
    let data = TempDir::new();
    let dir = data.path().join("fresh"); // does not exist yet
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()]).await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
        let r = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let spec: serde_json::Value = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(
        dir.join("registro.db").is_file(),
        "the embedded database was created"
    );
    let key = dir.join("master.key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let status = server.terminate().await;
    assert!(status.success(), "a clean stop exits 0, got {status}");

    // A second start reuses the same key and database.
    let key_before = std::fs::read_to_string(&key).unwrap();
    let again = Server::start(&["--data-dir", dir.to_str().unwrap()]).await;
    assert!(again.terminate().await.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_before);
}

#[tokio::test]
async fn serve_runs_on_postgres_with_a_master_key_and_refuses_without_one() {
    let db = TestDb::new().await;
    let refused = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("master key is required"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains(db.url()),
        "the database URL is never printed"
    );

    let key = registro_store::MasterKey::generate().to_base64();
    // Connected as a superuser (the tests' administrator), whom row-level security never
    // holds: refused, unless the operator says so.
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let superuser = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
        "--master-key",
        &key,
        "--data-dir",
        dir,
    ]);
    assert_eq!(superuser.status.code(), Some(2));
    assert!(
        stderr(&superuser).contains("row-level security does not hold this role"),
        "{}",
        stderr(&superuser)
    );
    let bypass = Server::start(&[
        "--database-url",
        db.url(),
        "--master-key",
        &key,
        "--data-dir",
        dir,
        "--allow-rls-bypass",
    ])
    .await;
    assert!(bypass.terminate().await.success());

    // As an ordinary role (the data directory still holds the local token issuer's key).
    let app = db.app_url().await;
    let server = Server::start(&[
        "--database-url",
        &app,
        "--master-key",
        &key,
        "--data-dir",
        dir,
    ])
    .await;
    let r = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_bad_master_key_is_refused_without_echoing_it() {
    let data = TempDir::new();
    let out = run(&[
        "serve",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--master-key",
        "c2VjcmV0LXNob3J0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid master key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("c2VjcmV0LXNob3J0"));
}

/// With `--migrate-on-start false` the service starts on an unmigrated database, is alive but
/// not ready, and becomes ready once an operator runs `registro migrate`.
#[tokio::test]
async fn without_migrate_on_start_serve_is_not_ready_until_migrated() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["--data-dir", dir, "--migrate-on-start", "false"]).await;
    let (status, content_type, body) = get(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"].as_str().unwrap().contains("pending"),
        "{problem}"
    );

    let migrated = run(&["migrate", "--data-dir", dir]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let (status, _, body) = get(&server, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(server.terminate().await.success());
}

/// `--log-json` writes JSON lines to standard error, and the line of a request carries its
/// request id and route.
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let data = TempDir::new();
    let log = data.path().join("stderr.log");
    let server = Server::start_logging_to(
        &log,
        &[
            "--data-dir",
            data.path().join("d").to_str().unwrap(),
            "--log-json",
        ],
    )
    .await;
    let r = reqwest::Client::new()
        .get(format!("{}/readyz", server.base))
        .header("x-request-id", "e2e-log-probe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "e2e-log-probe");
    assert!(server.terminate().await.success());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "e2e-log-probe"
                && l["span"]["route"] == "/readyz"
                && l["fields"]["status"] == 200),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "listening"),
        "{text}"
    );
}
