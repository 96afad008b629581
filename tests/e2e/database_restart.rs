//! The database fails under load (issue 9): `registro serve` on a PostgreSQL cluster of the
//! test's own, four clients writing to four schools, and the cluster crashes (`pg_ctl stop -m
//! immediate`) and starts again in the middle. While it is down the API answers 503 with
//! `Retry-After` at once (no request hangs); it recovers by itself; and every write it
//! acknowledged is in the log afterwards, once (the acknowledged idempotency keys against the
//! log's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use registro_domain::{FiscalCode, SchoolId};
use registro_store::postgres::PgStore;
use registro_store::{EventStore as _, MasterKey, Sealed};
use registro_testkit::TempDir;
use registro_testkit::pg::OwnCluster;
use serde_json::json;

use crate::support::{Server, add_principal, run, stderr, stdout};

/// The clients, one school each.
const WRITERS: usize = 4;
/// How long a request may take before it counts as hanging: well above the pool's wait and
/// the connect timeout (5 s each), well below the client's own timeout.
const HANGING: Duration = Duration::from_secs(12);

/// One answered request.
struct Answer {
    key: String,
    status: u16,
    retry_after: bool,
    took: Duration,
    after_restart: bool,
}

#[tokio::test]
async fn a_database_crash_under_load_loses_no_acknowledged_write() {
    let cluster = OwnCluster::start();
    let url = cluster.url();
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap().to_owned();
    let key = MasterKey::generate().to_base64();
    let storage = ["--database-url", url.as_str(), "--master-key", key.as_str()];

    // Four schools, each with its principal, and a token for each.
    let principal = FiscalCode::with_check_character("XXXYYY66A41Z999").unwrap();
    let schools: Vec<SchoolId> = (0..WRITERS).map(|_| SchoolId::new()).collect();
    let mut tokens = Vec::new();
    for school in &schools {
        add_principal(*school, principal.as_str(), &dir, &storage);
        let school = school.to_string();
        let token = run(&[
            "token",
            "--school",
            &school,
            "--fiscal-code",
            principal.as_str(),
            "--data-dir",
            &dir,
        ]);
        assert!(token.status.success(), "{}", stderr(&token));
        tokens.push(stdout(&token).trim().to_owned());
    }
    let mut args = vec![
        "--data-dir",
        dir.as_str(),
        "--allow-rls-bypass",
        "--read-rate-limit",
        "0",
    ];
    args.extend(storage);
    let server = Server::start(&args).await;

    // The load: each writer adds subjects to its school, a new idempotency key each.
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let writers: Vec<_> = schools
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(w, (school, token))| {
            let (http, stop, restarted) = (http.clone(), Arc::clone(&stop), Arc::clone(&restarted));
            let url = format!("{}/schools/{school}/subjects", server.base);
            let token = token.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("restart-{w}-{i}");
                    let after_restart = restarted.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("idempotency-key", &key)
                        .json(&json!({"name": format!("Materia {i}"), "scale": "numeric"}))
                        .send()
                        .await
                        .expect("an answer, not a hang or a dropped connection");
                    let status = r.status().as_u16();
                    answers.push(Answer {
                        key,
                        status,
                        retry_after: r.headers().contains_key("retry-after"),
                        took: started.elapsed(),
                        after_restart,
                    });
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                answers
            })
        })
        .collect();

    // Load, crash, a few seconds down, start again, load until writes go through again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.crash();
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_server();
        cluster
    })
    .await
    .unwrap();
    restarted.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers: BTreeMap<SchoolId, Vec<Answer>> = BTreeMap::new();
    for (school, writer) in schools.iter().zip(writers) {
        answers.insert(*school, writer.await.unwrap());
    }
    assert!(server.terminate().await.success());

    let all = || answers.values().flatten();
    for a in all() {
        assert!(
            matches!(a.status, 200 | 201 | 503),
            "{} answered {}",
            a.key,
            a.status
        );
        assert!(a.took < HANGING, "{} took {:?}", a.key, a.took);
        if a.status == 503 {
            assert!(a.retry_after, "{}: a 503 without Retry-After", a.key);
        }
    }
    let unavailable = all().filter(|a| a.status == 503).count();
    assert!(unavailable > 0, "the outage was seen");
    let recovered = all().filter(|a| a.after_restart && a.status == 201).count();
    assert!(recovered > 0, "writes went through again after the restart");

    // Every acknowledged write is in the log, once.
    let store = PgStore::connect(&url, 2, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    for (school, answers) in &answers {
        let mut logged = Vec::new();
        let mut from = 1;
        loop {
            let page = store
                .read_school(*school, from, 1000, Sealed::Keep)
                .await
                .unwrap();
            for e in &page {
                // Stored as `<person>:<the client's key>`.
                if let Some(k) = e
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| k.as_str().rsplit(':').next())
                {
                    logged.push(k.to_owned());
                }
            }
            match page.last() {
                Some(e) if page.len() == 1000 => from = e.school_seq + 1,
                _ => break,
            }
        }
        let distinct: BTreeSet<&String> = logged.iter().collect();
        assert_eq!(distinct.len(), logged.len(), "no write twice");
        let acknowledged: BTreeSet<&String> = answers
            .iter()
            .filter(|a| matches!(a.status, 200 | 201))
            .map(|a| &a.key)
            .collect();
        let lost: Vec<_> = acknowledged.difference(&distinct).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged but not in the log, as {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
        assert!(!acknowledged.is_empty());
    }
    eprintln!(
        "{} requests, {} acknowledged, {unavailable} answered 503, {recovered} acknowledged after \
         the restart",
        all().count(),
        all().filter(|a| a.status != 503).count()
    );
    let verified = run(&[
        "verify",
        "--school",
        &schools[0].to_string(),
        "--database-url",
        &url,
        "--master-key",
        &key,
    ]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    drop(cluster);
}
