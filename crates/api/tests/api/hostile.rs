//! Hostile input (issue 9): oversized, deep, odd or malformed requests are refused with a
//! problem, write nothing and reveal nothing; every response carries the security headers; CORS
//! lets in only the origins configured; parallel retries of one command write it once.

use std::sync::Arc;

use registro_api::ratelimit::RateLimit;
use registro_api::{ApiConfig, ProjectionConfig, build};
use registro_domain::Role;
use registro_store::sqlite::SqliteStore;
use registro_store::{EventStore, MasterKey};
use registro_testkit::TempDir;
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, body};

/// The school's head: how many events it has.
async fn events(w: &World) -> u64 {
    w.store
        .school_head(w.a)
        .await
        .unwrap()
        .map_or(0, |h| h.last_seq)
}

/// A problem that names nothing internal.
async fn refused(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "{response:?}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let text = response.text().await.unwrap();
    for internal in [
        "panicked",
        "src/",
        ".rs:",
        "sqlite",
        "postgres",
        "SELECT",
        "registro_",
        "StoreError",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["status"], status);
    problem
}

async fn hostile_requests_are_refused_and_write_nothing(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let secretary = w.token(Role::Secretary);
    let grades = format!("{}{s}/students/{}/years/2025/grades", w.base, w.x);
    let before = events(&w).await;
    let post = |body: Vec<u8>| {
        w.client
            .post(&grades)
            .bearer_auth(&teacher)
            .header("content-type", "application/json")
            .body(body)
    };

    // Over the body limit (1 MiB): 413.
    let mut grade = crate::world::grade_body("7");
    grade["description"] = json!("x".repeat(2 * 1024 * 1024));
    refused(
        post(grade.to_string().into_bytes()).send().await.unwrap(),
        413,
    )
    .await;
    // Nested deeper than the API takes: 400.
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let mut grade = crate::world::grade_body("7");
    grade["description"] = deep;
    refused(
        post(grade.to_string().into_bytes()).send().await.unwrap(),
        400,
    )
    .await;
    // Deeper than the JSON parser goes: 400 as well.
    let nested = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    refused(post(nested.into_bytes()).send().await.unwrap(), 400).await;
    // An unknown field: 422 naming it.
    let mut grade = crate::world::grade_body("7");
    grade["voto_bonus"] = json!(10);
    let problem = refused(
        post(grade.to_string().into_bytes()).send().await.unwrap(),
        422,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("voto_bonus"),
        "{problem}"
    );
    // Not JSON, not UTF-8, not a JSON body at all.
    refused(post(b"{\"mark\": ".to_vec()).send().await.unwrap(), 400).await;
    refused(post(vec![0xff, 0xfe, 0x00]).send().await.unwrap(), 400).await;
    let r = w
        .client
        .post(&grades)
        .bearer_auth(&teacher)
        .body(crate::world::grade_body("7").to_string())
        .send()
        .await
        .unwrap();
    refused(r, 415).await;
    // Too many headers, or one too large: 431.
    let mut many = post(crate::world::grade_body("7").to_string().into_bytes());
    for i in 0..80 {
        many = many.header(format!("x-extra-{i}"), "1");
    }
    refused(many.send().await.unwrap(), 431).await;
    let large = post(crate::world::grade_body("7").to_string().into_bytes())
        .header("x-large", "y".repeat(20 * 1024));
    refused(large.send().await.unwrap(), 431).await;
    // A malformed idempotency key, a malformed query.
    let r = post(crate::world::grade_body("7").to_string().into_bytes())
        .header("idempotency-key", "spazi non ammessi")
        .send()
        .await
        .unwrap();
    refused(r, 400).await;
    let principal = w.token(Role::Principal);
    for before in ["-1", "9223372036854775808"] {
        let r = w
            .client
            .get(format!("{}{s}/access-log?before={before}", w.base))
            .bearer_auth(&principal)
            .send()
            .await
            .unwrap();
        refused(r, 400).await;
    }
    // A CSV file over the body limit.
    let mut csv = String::from("codice_fiscale,cognome,nome,data_di_nascita,classe\n");
    while csv.len() <= 1024 * 1024 {
        csv.push_str("XXXXXX00X00X000X,Rossi,Mario,2010-01-01,1A\n");
    }
    let r = w
        .client
        .post(format!("{}{s}/enrolments", w.base))
        .bearer_auth(&secretary)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    refused(r, 413).await;

    assert_eq!(events(&w).await, before, "nothing was written");
    // And the API still answers.
    let (path, grade) = (
        format!("{s}/students/{}/years/2025/grades", w.x),
        crate::world::grade_body("7"),
    );
    let r = w
        .call(Method::POST, &path, Some(&teacher), Some(&grade))
        .await;
    body(r, 201).await;
}

#[tokio::test]
async fn sqlite_hostile_requests_are_refused_and_write_nothing() {
    hostile_requests_are_refused_and_write_nothing(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_hostile_requests_are_refused_and_write_nothing() {
    hostile_requests_are_refused_and_write_nothing(World::postgres(RateLimit::default()).await)
        .await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let w = World::sqlite(RateLimit::default()).await;
    let guardian = w.token(Role::Guardian);
    let family = format!(
        "{}/schools/{}/students/{}/years/2025/family",
        w.base, w.a, w.x
    );
    let answers = [
        w.client.get(format!("{}/healthz", w.base)),
        w.client.get(format!("{}/nowhere", w.base)),
        w.client.get(&family),
        w.client.get(&family).bearer_auth(&guardian),
        w.client.get(format!("{}/docs", w.base)),
    ];
    for request in answers {
        let r = request.send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{r:?}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert!(h.contains_key("strict-transport-security"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = h["content-type"].to_str().unwrap().starts_with("text/html");
        assert_eq!(csp.contains("style-src 'unsafe-inline'"), html, "{csp}");
        // Only the documentation page runs a script of its own.
        let docs = r.url().path() == "/docs";
        assert_eq!(csp.contains("script-src"), docs, "{csp}");
        assert!(h.contains_key("cache-control"), "{r:?}");
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "no CORS unless configured"
        );
    }
    // Personal data is not kept by caches.
    let r = w
        .client
        .get(&family)
        .bearer_auth(&guardian)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cache = r.headers()["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("no-store") || cache.contains("private"),
        "{cache}"
    );
}

/// The API over `store` with the CORS origins `cors`, trusting a new local issuer: its base
/// URL and the issuer.
async fn serve(
    store: Arc<dyn EventStore>,
    cors: Vec<String>,
) -> (String, registro_api::auth::LocalIssuer) {
    let issuer = registro_api::auth::LocalIssuer::generate();
    let verifier = registro_api::auth::TokenVerifier::new(
        registro_api::auth::LocalIssuer::verifier_config(),
        Arc::new(registro_api::auth::KeySet::new(Arc::new(issuer.jwks()))),
    );
    let app = build(
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            local_jwks: None,
            verifier,
            read_limit: RateLimit::OFF,
            today: None,
            projections: ProjectionConfig::default(),
            cors_origins: cors,
            overview_cache_bytes: registro_api::overview_cache::OverviewCache::DEFAULT_BYTES,
        },
        store,
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (base, issuer)
}

#[tokio::test]
async fn cors_lets_in_only_the_origins_configured() {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (base, _) = serve(Arc::new(store), vec!["https://app.example.it".into()]).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(Method::OPTIONS, format!("{base}/schools/x/me"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example.it").await.unwrap();
    assert!(allowed.status().is_success(), "{allowed:?}");
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.it");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("idempotency-key"), "{headers}");
    assert!(!h.contains_key("access-control-allow-credentials"));

    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(
        !other.headers().contains_key("access-control-allow-origin"),
        "{other:?}"
    );
    // A simple request from the allowed origin sees the headers a client needs.
    let r = client
        .get(format!("{base}/healthz"))
        .header("origin", "https://app.example.it")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.it"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

/// Fifty clients retrying the same command at once with the same idempotency key: it is
/// written once, and every one of them gets its result.
async fn parallel_retries_write_a_command_once(w: World) {
    let teacher = w.token(Role::Teacher);
    let grades = format!(
        "{}/schools/{}/students/{}/years/2025/grades",
        w.base, w.a, w.x
    );
    let before = events(&w).await;
    let grade = crate::world::grade_body("8");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let request = w
                .client
                .post(&grades)
                .bearer_auth(&teacher)
                .header("idempotency-key", "retry-grade-1")
                .json(&grade);
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let answer: Value = r.json().await.unwrap();
                (status, answer)
            })
        })
        .collect();
    let mut positions = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {answer}");
        positions.insert(answer["position"].as_u64().unwrap());
    }
    assert_eq!(positions.len(), 1, "one result for all: {positions:?}");
    assert_eq!(events(&w).await, before + 1, "written once");
}

#[tokio::test]
async fn sqlite_parallel_retries_write_a_command_once() {
    parallel_retries_write_a_command_once(World::sqlite(RateLimit::OFF).await).await;
}

#[tokio::test]
async fn postgres_parallel_retries_write_a_command_once() {
    parallel_retries_write_a_command_once(World::postgres(RateLimit::OFF).await).await;
}

/// With every pooled connection busy, a request waits at most the pool's wait and answers 503
/// with `Retry-After`; once a connection is free again the API answers as before.
#[tokio::test]
async fn an_exhausted_pool_answers_503_with_retry_after() {
    use registro_store::postgres::{POOL_WAIT, PgStore};
    let db = registro_testkit::pg::TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PgStore::connect(db.url(), 1, MasterKey::generate())
            .await
            .unwrap(),
    );
    let (base, issuer) = serve(Arc::clone(&store), Vec::new()).await;
    let school = registro_domain::SchoolId::new();
    let code = registro_domain::FiscalCode::with_check_character("XXXYYY85M52Z999").unwrap();
    let token = issuer
        .issue(school, &code, std::time::Duration::from_secs(600))
        .unwrap();
    let me = {
        let (base, token) = (base.clone(), token.clone());
        move || {
            reqwest::Client::new()
                .get(format!("{base}/schools/{school}/me"))
                .bearer_auth(token.clone())
                .send()
        }
    };
    // Nobody of this school: not found, once the directory could be read.
    assert_eq!(me().await.unwrap().status(), 404);

    // The only connection, busy for longer than the pool's wait.
    let busy = POOL_WAIT + std::time::Duration::from_secs(3);
    let sleeper = {
        let store = Arc::clone(&store);
        let sql = format!("SELECT count(*) FROM pg_sleep({})", busy.as_secs());
        tokio::spawn(async move {
            store
                .query_projection(school, &sql, &[], &[registro_store::CellType::Int])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let r = me().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 503, "{r:?}");
    assert!(r.headers().contains_key("retry-after"), "{r:?}");
    assert!(
        waited < busy,
        "answered once the pool's wait was over ({waited:?}), not when the connection freed"
    );
    refused(r, 503).await;
    sleeper.await.unwrap().unwrap();
    assert_eq!(me().await.unwrap().status(), 404);
}
