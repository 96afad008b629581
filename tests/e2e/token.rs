//! `registro token` and the keys `serve` publishes: works offline, as embedded mode must.

use std::sync::Arc;

use registro_api::auth::{JwkSet, KeySet, LocalIssuer, TokenVerifier};
use registro_domain::{FiscalCode, SchoolId};
use registro_testkit::TempDir;

use crate::support::{Server, run, stderr, stdout};

#[tokio::test]
async fn a_token_from_the_cli_verifies_against_the_keys_serve_publishes() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = SchoolId::new();
    // Synthetic: surname XXX, name YYY, born in "country" Z999, which does not exist.
    let code = FiscalCode::with_check_character("XXXYYY85M52Z999").unwrap();
    let out = run(&[
        "token",
        "--school",
        &school.to_string(),
        "--fiscal-code",
        &code.as_str().to_lowercase(),
        "--ttl",
        "10m",
        "--data-dir",
        dir,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let server = Server::start(&["--data-dir", dir]).await;
    let keys: JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verifier = TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(keys))),
    );
    let id = verifier.verify(&token).await.unwrap();
    assert_eq!((id.school, id.fiscal_code), (Some(school), code));
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_bad_fiscal_code_or_lifetime_is_refused() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = SchoolId::new().to_string();
    let bad_code = run(&[
        "token",
        "--school",
        &school,
        "--fiscal-code",
        "XXXYYY85M52Z999A",
        "--data-dir",
        dir,
    ]);
    assert_eq!(bad_code.status.code(), Some(2));
    assert!(
        stderr(&bad_code).contains("carattere di controllo"),
        "{}",
        stderr(&bad_code)
    );
    let code = FiscalCode::with_check_character("XXXYYY85M52Z999").unwrap();
    let bad_ttl = run(&[
        "token",
        "--school",
        &school,
        "--fiscal-code",
        code.as_str(),
        "--ttl",
        "30d",
        "--data-dir",
        dir,
    ]);
    assert!(!bad_ttl.status.success());
    assert!(stderr(&bad_ttl).contains("7d"), "{}", stderr(&bad_ttl));
}
