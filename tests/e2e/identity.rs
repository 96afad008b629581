//! Identity end to end, with the real binary: the demo school and its tokens, a new school's
//! first person from the command line, and an external OpenID Connect provider found by
//! discovery over HTTP (a provider of the test's own, on this machine: no test reaches the
//! internet).

use std::time::{SystemTime, UNIX_EPOCH};

use registro_api::auth::LocalIssuer;
use registro_domain::{FiscalCode, SchoolId};
use registro_testkit::TempDir;
use serde_json::{Value, json};

use crate::support::{Server, run, stderr, stdout};

/// GETs `path` with a bearer token.
async fn get(server: &Server, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The tokens `serve --demo` printed, by the first word of their label, and the school.
fn demo_tokens(printed: &str) -> (String, Vec<(String, String)>) {
    let school = printed
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Demo school "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no school in {printed:?}"))
        .to_owned();
    let lines: Vec<&str> = printed.lines().collect();
    let tokens = lines
        .windows(2)
        .filter_map(|w| {
            let label = w[0].strip_prefix("# ")?;
            Some((label.split(' ').next()?.to_owned(), w[1].to_owned()))
        })
        .collect();
    (school, tokens)
}

#[tokio::test]
async fn serve_demo_prints_a_working_token_for_each_role() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let out = data.path().join("out.txt");
    let server = Server::start_printing_to(&out, &["--data-dir", dir, "--demo"]).await;
    let (school, tokens) = demo_tokens(&std::fs::read_to_string(&out).unwrap());
    let roles: Vec<&str> = tokens.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "principal",
            "secretary",
            "teacher",
            "guardian",
            "student",
            "student",
            "auditor",
            "admin"
        ]
    );
    let token = |role: &str| tokens.iter().find(|(r, _)| r == role).unwrap().1.clone();
    for (role, t) in &tokens {
        let r = get(&server, &format!("/schools/{school}/me"), t).await;
        assert_eq!(r.status(), 200, "{role}");
    }
    // The guardian's child, and another student nobody of the demo is linked to.
    let me: Value = get(
        &server,
        &format!("/schools/{school}/me"),
        &token("guardian"),
    )
    .await
    .json()
    .await
    .unwrap();
    let child = me["children"][0]["id"].as_str().unwrap().to_owned();
    let roster: Value = get(
        &server,
        &format!("/schools/{school}/classes/{}", {
            let t: Value = get(&server, &format!("/schools/{school}/me"), &token("teacher"))
                .await
                .json()
                .await
                .unwrap();
            t["classes"][0]["id"].as_str().unwrap().to_owned()
        }),
        &token("teacher"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        roster["students"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == child.as_str()),
        "{roster}"
    );
    let record = format!("/schools/{school}/students/{child}");
    assert_eq!(
        get(&server, &record, &token("guardian")).await.status(),
        200
    );
    // The teacher's roster read above is in the child's access log, for the guardian to see.
    let log: Value = get(&server, &format!("{record}/access-log"), &token("guardian"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["entries"][0]["role"], "teacher", "{log}");
    assert_eq!(log["entries"][0]["view"], "class.roster");
    assert_eq!(get(&server, &record, &token("auditor")).await.status(), 403);
    assert!(server.terminate().await.success());

    // A second start finds the same school instead of creating another.
    let out2 = data.path().join("out2.txt");
    let again = Server::start_printing_to(&out2, &["--data-dir", dir, "--demo"]).await;
    let (school2, tokens2) = demo_tokens(&std::fs::read_to_string(&out2).unwrap());
    assert_eq!(school2, school);
    let me2: Value = get(&again, &format!("/schools/{school}/me"), &tokens2[3].1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me2["children"][0]["id"], child.as_str());
    assert_eq!(me2["children"].as_array().unwrap().len(), 1);
    assert!(again.terminate().await.success());
}

#[tokio::test]
async fn a_new_schools_first_principal_comes_from_the_command_line() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = SchoolId::new().to_string();
    let code = FiscalCode::with_check_character("XXXYYY66A41Z999").unwrap();
    let added = run(&[
        "add-person",
        "--school",
        &school,
        "--fiscal-code",
        code.as_str(),
        "--family-name",
        "Preside",
        "--given-name",
        "Prima",
        "--role",
        "principal",
        "--data-dir",
        dir,
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stdout(&added).contains("school_seq 1"),
        "{}",
        stdout(&added)
    );
    // The same fiscal code again is refused, with the reason.
    let again = run(&[
        "add-person",
        "--school",
        &school,
        "--fiscal-code",
        code.as_str(),
        "--family-name",
        "Preside",
        "--given-name",
        "Prima",
        "--role",
        "teacher",
        "--data-dir",
        dir,
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("codice fiscale"),
        "{}",
        stderr(&again)
    );

    let token = run(&[
        "token",
        "--school",
        &school,
        "--fiscal-code",
        code.as_str(),
        "--data-dir",
        dir,
    ]);
    let token = stdout(&token).trim().to_owned();
    let server = Server::start(&["--data-dir", dir]).await;
    let me: Value = get(&server, &format!("/schools/{school}/me"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["principal"]));
    let secretary = FiscalCode::with_check_character("XXXYYY70A01Z999").unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/schools/{school}/people", server.base))
        .bearer_auth(&token)
        .json(
            &json!({"fiscal_code": secretary.as_str(), "family_name": "Segreteria",
            "given_name": "Sara", "role": "secretary"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(server.terminate().await.success());
}

/// A provider of the test's own: OpenID Connect discovery and a JWKS, served on this machine.
async fn provider(issuer: &LocalIssuer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/keys")});
    let keys = serde_json::to_value(issuer.jwks()).unwrap();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/keys",
            axum::routing::get(move || async move { axum::Json(keys) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn serve_trusts_an_external_provider_found_by_discovery() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = SchoolId::new();
    let code = FiscalCode::with_check_character("XXXYYY66A41Z999").unwrap();
    let added = run(&[
        "add-person",
        "--school",
        &school.to_string(),
        "--fiscal-code",
        code.as_str(),
        "--family-name",
        "Preside",
        "--given-name",
        "Prima",
        "--role",
        "principal",
        "--data-dir",
        dir,
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let gateway = LocalIssuer::generate();
    let issuer = provider(&gateway).await;
    let server = Server::start(&[
        "--data-dir",
        dir,
        "--oidc-issuer",
        &issuer,
        "--oidc-audience",
        "registro-test",
    ])
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |aud: &str| {
        json!({"iss": issuer, "aud": aud, "sub": "spid-user-1", "iat": now, "nbf": now,
            "exp": now + 300,
            "https://attributes.eid.gov.it/fiscal_number": format!("TINIT-{code}")})
    };
    let me = format!("/schools/{school}/me");
    let token = gateway.sign(&claims("registro-test")).unwrap();
    assert_eq!(get(&server, &me, &token).await.status(), 200);
    let other_audience = gateway.sign(&claims("another-client")).unwrap();
    assert_eq!(get(&server, &me, &other_audience).await.status(), 401);
    // With a provider configured, registro's own local tokens are not trusted, and its local
    // keys are not published.
    let local = run(&[
        "token",
        "--school",
        &school.to_string(),
        "--fiscal-code",
        code.as_str(),
        "--data-dir",
        dir,
    ]);
    let local = stdout(&local).trim().to_owned();
    assert_eq!(get(&server, &me, &local).await.status(), 401);
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", server.base))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 404);
    assert!(server.terminate().await.success());
}

/// Variables set to nothing (as `compose.yaml` passes the identity provider's when they are not
/// configured) mean no provider: the local issuer is trusted and its keys are published.
#[tokio::test]
async fn empty_identity_variables_mean_the_local_issuer() {
    let data = TempDir::new();
    let mut cmd = crate::support::registro();
    cmd.env("REGISTRO_OIDC_ISSUER", "")
        .env("REGISTRO_OIDC_AUDIENCE", "")
        .env("REGISTRO_OIDC_JWKS_URL", " ")
        .stdout(std::process::Stdio::null());
    let server = Server::start_command(cmd, &["--data-dir", data.path().to_str().unwrap()]).await;
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", server.base))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert!(server.terminate().await.success());
}
