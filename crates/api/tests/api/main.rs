//! The API over real HTTP, on real stores: SQLite files and PostgreSQL databases of their own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod audit;
mod auditor;
mod authorization;
mod communications;
mod executor;
mod family;
mod health;
mod hostile;
mod portability;
mod register;
mod rejections;
mod scrutiny;
mod world;

use std::sync::Arc;

use registro_api::auth::{KeySet, LocalIssuer, TokenVerifier};
use registro_api::ratelimit::RateLimit;
use registro_api::{ApiConfig, ApiDoc, ProjectionConfig, build};
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_store::{EventStore, MasterKey};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use serde_json::Value;
use tokio::sync::oneshot;
use utoipa::OpenApi as _;

/// A running API and what it needs kept alive.
struct TestApp {
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: Option<TempDir>,
    _db: Option<TestDb>,
}

impl TestApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

/// A verifier that trusts `issuer`'s tokens.
fn verifier_for(issuer: &LocalIssuer) -> TokenVerifier {
    TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(issuer.clone()))),
    )
}

async fn spawn(store: Arc<dyn EventStore>) -> (String, oneshot::Sender<()>) {
    spawn_with(
        store,
        &LocalIssuer::generate(),
        RateLimit::default(),
        world::read_models(),
    )
    .await
}

/// The API over `store`, trusting `issuer`, with the read limit `limit`, knowing the read
/// models of `projections`.
async fn spawn_with(
    store: Arc<dyn EventStore>,
    issuer: &LocalIssuer,
    limit: RateLimit,
    projections: ProjectionConfig,
) -> (String, oneshot::Sender<()>) {
    let app = build(
        ApiConfig {
            cors_origins: Vec::new(),
            overview_cache_bytes: registro_api::overview_cache::OverviewCache::DEFAULT_BYTES,
            listen: "127.0.0.1:0".parse().unwrap(),
            local_jwks: None,
            verifier: verifier_for(issuer),
            read_limit: limit,
            // The tests' school year is 2025/26: "today" is its last day of June.
            today: Some(time::macros::date!(2026 - 06 - 30)),
            projections,
        },
        store,
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// The API on a migrated SQLite file of its own (or an unmigrated one).
async fn spawn_sqlite(migrated: bool) -> TestApp {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
        .await
        .unwrap();
    if migrated {
        store.migrate().await.unwrap();
    }
    let (base, stop) = spawn(Arc::new(store)).await;
    TestApp {
        base,
        client: reqwest::Client::new(),
        _stop: stop,
        _dir: Some(dir),
        _db: None,
    }
}

async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_sqlite(true).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_once_migrated_and_not_before() {
    let app = spawn_sqlite(true).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["migrations"], "ok");

    let unmigrated = spawn_sqlite(false).await;
    let r = unmigrated.get("/readyz").await;
    assert_eq!(r.headers()["retry-after"], "5");
    let body = assert_problem(r, 503).await;
    assert!(
        body["detail"].as_str().unwrap().contains("pending"),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_on_postgres_follows_the_database() {
    let db = TestDb::new().await;
    let store = PgStore::connect(db.url(), 4, MasterKey::generate())
        .await
        .unwrap();
    let (base, stop) = spawn(Arc::new(store)).await;
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        _stop: stop,
        _dir: None,
        _db: None,
    };
    assert_eq!(app.get("/readyz").await.status(), 200);
    // The database goes away: not ready, and nothing internal is told.
    drop(db);
    let body = assert_problem(app.get("/readyz").await, 503).await;
    assert_eq!(body["detail"], "The database does not answer.");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_sqlite(true).await;
    app.get("/healthz").await;
    app.get("/no/such/thing").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"registro_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        !text.contains("/no/such/thing"),
        "raw paths never become labels"
    );
    assert!(
        text.contains("registro_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"registro_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_is_3_1_and_describes_every_route() {
    let app = spawn_sqlite(true).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/.well-known/jwks.json",
    ] {
        assert!(
            spec["paths"][path]["get"].is_object(),
            "{path} is not described"
        );
    }
    assert_eq!(
        spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/problem+json"]
            ["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(spec["components"]["schemas"]["Problem"]["properties"]["status"].is_object());
    // What every operation can answer: a 500 problem, and the request id on every response;
    // the school's routes also need a bearer token and answer 401, 403 and 404.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert_eq!(
                responses["500"]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path}"
            );
            for (status, response) in responses {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{method} {path} {status} lacks x-request-id"
                );
            }
            if path.starts_with("/schools/") {
                assert_eq!(operation["security"][0]["bearer"], serde_json::json!([]));
                for status in ["401", "403", "404"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// The served spec equals the committed snapshot, so that every change to the API is seen in
/// review. After a deliberate change: `UPDATE_SNAPSHOTS=1 cargo test -p registro-api`.
#[test]
fn openapi_matches_the_snapshot() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    let current = ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "the OpenAPI document changed; review the difference and accept it with \
         `UPDATE_SNAPSHOTS=1 cargo test -p registro-api --test api openapi`\n{}",
        line_diff(&committed, &current)
    );
}

/// Every JSON request body and every JSON success response is documented with an example of
/// each of its fields (or of the schemas it is made of), so that the docs page shows a request
/// that works and what comes back.
#[test]
fn every_request_and_response_field_has_an_example() {
    let spec = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let schemas = &spec["components"]["schemas"];
    let mut missing = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let request = &op["requestBody"]["content"]["application/json"];
            let responses = op["responses"].as_object().into_iter().flatten();
            let successes = responses
                .filter(|(status, _)| status.starts_with('2'))
                .map(|(_, r)| &r["content"]["application/json"]);
            for content in std::iter::once(request).chain(successes) {
                if content.is_null() || content.get("example").is_some() {
                    continue;
                }
                let mut pending = vec![content["schema"].clone()];
                let mut seen = std::collections::BTreeSet::new();
                while let Some(schema) = pending.pop() {
                    let schema = match schema["$ref"].as_str() {
                        Some(r) if !seen.insert(r.to_owned()) => continue,
                        Some(r) => schemas[r.rsplit('/').next().unwrap()].clone(),
                        None => schema,
                    };
                    if schema.get("example").is_some() {
                        continue;
                    }
                    if schema.get("items").is_some() {
                        pending.push(schema["items"].clone());
                    }
                    for (name, field) in schema["properties"].as_object().into_iter().flatten() {
                        let parts: Vec<&Value> = [&field["items"]]
                            .into_iter()
                            .chain(field["oneOf"].as_array().into_iter().flatten())
                            .chain(std::iter::once(field))
                            .filter(|s| s.get("$ref").is_some())
                            .collect();
                        if !parts.is_empty() {
                            pending.extend(parts.into_iter().cloned());
                        } else if field.get("example").is_none() {
                            missing.insert(format!("{} {path}: {name}", method.to_uppercase()));
                        }
                    }
                }
            }
        }
    }
    let missing: Vec<String> = missing.into_iter().collect();
    assert!(
        missing.is_empty(),
        "fields without an example:\n{}",
        missing.join("\n")
    );
}

/// The lines that differ between `old` and `new` (after their common beginning and end), marked
/// `-` and `+`, with a little context and line numbers.
fn line_diff(old: &str, new: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let head = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let context = 3;
    let start = head.saturating_sub(context);
    let mut out = format!(
        "@@ first difference at line {} (- committed, + current) @@\n",
        head + 1
    );
    for line in &old[start..head] {
        out += &format!("  {line}\n");
    }
    for line in &old[head..old.len() - tail] {
        out += &format!("- {line}\n");
    }
    for line in &new[head..new.len() - tail] {
        out += &format!("+ {line}\n");
    }
    for line in new[new.len() - tail..].iter().take(context) {
        out += &format!("  {line}\n");
    }
    out
}

#[tokio::test]
async fn docs_page_is_self_contained_html() {
    let app = spawn_sqlite(true).await;
    let r = app.get("/docs").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    for third_party in ["http://", "https://", "//cdn", "<link"] {
        assert!(
            !html.contains(third_party),
            "the page must load nothing from elsewhere: {third_party}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_sqlite(true).await;
    let body = assert_problem(app.get("/nowhere").await, 404).await;
    assert_eq!(body["instance"], "/nowhere");
    let r = app
        .client
        .post(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405).await;
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let app = spawn_sqlite(true).await;
    let sent = app
        .client
        .get(format!("{}/nowhere", app.base))
        .header("x-request-id", "client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "client-42");
    assert_eq!(
        sent.json::<Value>().await.unwrap()["request_id"],
        "client-42"
    );

    let generated = app.get("/healthz").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let too_long = "x".repeat(200);
    let replaced = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", &too_long)
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], too_long.as_str());
}

#[tokio::test]
async fn the_local_issuers_keys_are_published_only_when_it_is_in_use() {
    use registro_api::auth::JwkSet;
    let without = spawn_sqlite(true).await;
    assert_problem(without.get("/.well-known/jwks.json").await, 404).await;

    let issuer = LocalIssuer::generate();
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let app = build(
        ApiConfig {
            cors_origins: Vec::new(),
            overview_cache_bytes: registro_api::overview_cache::OverviewCache::DEFAULT_BYTES,
            listen: "127.0.0.1:0".parse().unwrap(),
            local_jwks: Some(issuer.jwks()),
            verifier: verifier_for(&issuer),
            read_limit: RateLimit::default(),
            today: None,
            projections: ProjectionConfig::default(),
        },
        Arc::new(store),
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}/.well-known/jwks.json", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let published: JwkSet = reqwest::get(url).await.unwrap().json().await.unwrap();
    // A token of the issuer verifies against the published keys alone.
    let school = registro_domain::SchoolId::new();
    let code = registro_domain::FiscalCode::with_check_character("XXXYYY85M52Z999").unwrap();
    let token = issuer
        .issue(school, &code, std::time::Duration::from_secs(60))
        .unwrap();
    let verifier = TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(published))),
    );
    let id = verifier.verify(&token).await.unwrap();
    assert_eq!((id.school, id.fiscal_code), (Some(school), code));
}
