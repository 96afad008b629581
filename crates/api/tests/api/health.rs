//! The read models' health and read-your-writes (ADR 0022), on both stores: `/metrics` and
//! `/readyz` report each projection's lag and stop as the database shows them, whichever
//! process runs its projector; a read with `min_position` waits for its projection to include
//! that position, answers 503 with `Retry-After: 1` when it does not in time, and 422 for a
//! position the school's log does not have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use registro_api::ProjectionConfig;
use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_projection_audit::AuditTrail;
use registro_projector::{Projection, Projector, ProjectorError};
use registro_store::{ProjectionSchema, RecordedEvent, RowOp};
use reqwest::Method;
use serde_json::Value;

use crate::world::{World, body, grade_body};

/// A read model that can apply no event: its projector stops at the first one. It has no
/// tables, so the ordinary PostgreSQL role can prepare it.
struct Refusing;

impl Projection for Refusing {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: "refusing",
            tables: &[],
            postgres: &[],
            sqlite: &[],
        }
    }

    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>> {
        anyhow::bail!("secret-reason: {} is not understood", event.event_type)
    }
}

fn config(read_wait: Duration, degraded_after: Duration) -> ProjectionConfig {
    ProjectionConfig {
        read_wait,
        degraded_after,
        ..ProjectionConfig::new(["audit", "refusing", "never_started"])
    }
}

async fn world(postgres: bool, config: ProjectionConfig) -> World {
    let more = [Refusing.schema()];
    if postgres {
        World::postgres_with(RateLimit::default(), config, &more).await
    } else {
        World::sqlite_with(RateLimit::default(), config, &more).await
    }
}

/// The value of the gauge `name` of `projection` on `/metrics`.
async fn metric(w: &World, name: &str, projection: &str) -> f64 {
    let text = w
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    let prefix = format!("{name}{{projection=\"{projection}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
        .parse()
        .unwrap()
}

/// `/readyz`'s detail of `projection`, and the whole answer.
async fn readiness(w: &World, projection: &str) -> (Value, Value) {
    let ready = body(w.call(Method::GET, "/readyz", None, None).await, 200).await;
    let detail = ready["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == projection)
        .unwrap_or_else(|| panic!("{projection} is not in {ready}"))
        .clone();
    (detail, ready)
}

/// A teacher gives `x` a grade; the `position` answered.
async fn give_grade(w: &World) -> u64 {
    let grades = format!("/schools/{}/students/{}/years/2025/grades", w.a, w.x);
    let written = body(
        w.call(
            Method::POST,
            &grades,
            Some(&w.token(Role::Teacher)),
            Some(&grade_body("7")),
        )
        .await,
        201,
    )
    .await;
    written["position"].as_u64().unwrap()
}

/// Catches `projector` up until `done` holds, bounded: on PostgreSQL events reach
/// subscribers once older transactions on the server have ended (ADR 0003).
async fn catch_up_until(projector: &Projector, done: impl AsyncFn() -> bool) {
    for _ in 0..400 {
        projector.catch_up().await.unwrap();
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the projector never caught up");
}

async fn a_read_with_min_position_waits_for_the_trail_to_include_it(postgres: bool) {
    let w = world(
        postgres,
        config(Duration::from_secs(30), ProjectionConfig::DEGRADED_AFTER),
    )
    .await;
    let position = give_grade(&w).await;
    // The read comes first; the projector starts a moment later, and the read is answered
    // once it has applied the grade.
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(AuditTrail))
        .with_batches(100, Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = {
        let projector = projector.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            projector
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let s = format!("/schools/{}", w.a);
    let page = body(
        w.call(
            Method::GET,
            &format!("{s}/audit?action=GradeRecorded&min_position={position}"),
            Some(&w.token(Role::Auditor)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(page["entries"][0]["school_seq"], position, "{page}");
    // The student's trail, for the guardian, includes it at once now.
    let trail = body(
        w.call(
            Method::GET,
            &format!("{s}/students/{}/audit?min_position={position}", w.x),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(
        trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["school_seq"] == position && e["action"] == "GradeRecorded"),
        "{trail}"
    );
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn sqlite_a_read_with_min_position_waits_for_the_trail_to_include_it() {
    a_read_with_min_position_waits_for_the_trail_to_include_it(false).await;
}

#[tokio::test]
async fn postgres_a_read_with_min_position_waits_for_the_trail_to_include_it() {
    a_read_with_min_position_waits_for_the_trail_to_include_it(true).await;
}

async fn without_a_projector_a_read_with_min_position_is_503_and_beyond_the_log_422(
    postgres: bool,
) {
    let wait = Duration::from_millis(300);
    let w = world(postgres, config(wait, ProjectionConfig::DEGRADED_AFTER)).await;
    let position = give_grade(&w).await;
    let s = format!("/schools/{}", w.a);
    let auditor = w.token(Role::Auditor);
    let started = Instant::now();
    let r = w
        .call(
            Method::GET,
            &format!("{s}/audit?min_position={position}"),
            Some(&auditor),
            None,
        )
        .await;
    assert!(started.elapsed() >= wait, "it waited for the bound");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem = body(r, 503).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("posizione {position}")) && detail.contains("caught up"),
        "{problem}"
    );
    // The student's trail likewise, for the guardian.
    let r = w
        .call(
            Method::GET,
            &format!("{s}/students/{}/audit?min_position={position}", w.x),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await;
    assert_eq!(r.headers()["retry-after"], "1");
    body(r, 503).await;
    // A position the school's log does not have can never be reached: 422, without waiting.
    let problem = body(
        w.call(
            Method::GET,
            &format!("{s}/audit?min_position={}", position + 1000),
            Some(&auditor),
            None,
        )
        .await,
        422,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("never be reached"),
        "{problem}"
    );
    // Without it, or with 0, the trail answers at once with what it has.
    for query in ["", "?min_position=0"] {
        body(
            w.call(
                Method::GET,
                &format!("{s}/audit{query}"),
                Some(&auditor),
                None,
            )
            .await,
            200,
        )
        .await;
    }
    body(
        w.call(
            Method::GET,
            &format!("{s}/audit?min_position=latest"),
            Some(&auditor),
            None,
        )
        .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn sqlite_without_a_projector_a_read_with_min_position_is_503_and_beyond_the_log_422() {
    without_a_projector_a_read_with_min_position_is_503_and_beyond_the_log_422(false).await;
}

#[tokio::test]
async fn postgres_without_a_projector_a_read_with_min_position_is_503_and_beyond_the_log_422() {
    without_a_projector_a_read_with_min_position_is_503_and_beyond_the_log_422(true).await;
}

async fn lag_rises_without_a_projector_and_drops_after_catch_up(postgres: bool) {
    // Any event waiting makes a projection `behind`.
    let w = world(postgres, config(Duration::from_secs(2), Duration::ZERO)).await;
    let lag = metric(&w, "registro_projection_lag_events", "audit").await;
    assert!(lag > 0.0, "the world's events wait for the audit trail");
    assert!(metric(&w, "registro_projection_lag_seconds", "audit").await > 0.0);
    assert_eq!(
        metric(&w, "registro_projection_stopped", "audit").await,
        0.0
    );
    let (audit, ready) = readiness(&w, "audit").await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["projections"], "degraded");
    assert_eq!(audit["state"], "behind", "{audit}");
    assert_eq!(audit["lag_events"].as_f64(), Some(lag));
    assert!(audit["lag_seconds"].as_f64().unwrap() > 0.0, "{audit}");
    assert!(audit["stopped_since"].is_null(), "{audit}");

    give_grade(&w).await;
    let more = metric(&w, "registro_projection_lag_events", "audit").await;
    assert!(more > lag, "{more} after {lag}");

    let projector = Projector::new(Arc::clone(&w.store), Arc::new(AuditTrail));
    catch_up_until(&projector, async || {
        metric(&w, "registro_projection_lag_events", "audit").await == 0.0
    })
    .await;
    assert_eq!(
        metric(&w, "registro_projection_lag_seconds", "audit").await,
        0.0
    );
    let (audit, _) = readiness(&w, "audit").await;
    assert_eq!(audit["state"], "ok", "{audit}");
    assert_eq!(audit["lag_events"], 0);
    assert_eq!(audit["lag_seconds"], 0.0);
}

#[tokio::test]
async fn sqlite_lag_rises_without_a_projector_and_drops_after_catch_up() {
    lag_rises_without_a_projector_and_drops_after_catch_up(false).await;
}

#[tokio::test]
async fn postgres_lag_rises_without_a_projector_and_drops_after_catch_up() {
    lag_rises_without_a_projector_and_drops_after_catch_up(true).await;
}

async fn a_stopped_projection_is_reported_and_the_others_go_on(postgres: bool) {
    let w = world(
        postgres,
        config(Duration::from_secs(30), ProjectionConfig::DEGRADED_AFTER),
    )
    .await;
    let refusing = Projector::new(Arc::clone(&w.store), Arc::new(Refusing));
    let mut stopped = false;
    for _ in 0..400 {
        match refusing.catch_up().await {
            Err(ProjectorError::Poison { school_seq: 1, .. }) => {
                stopped = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stopped, "the refusing projector never met an event");
    assert_eq!(
        metric(&w, "registro_projection_stopped", "refusing").await,
        1.0
    );
    assert!(metric(&w, "registro_projection_lag_events", "refusing").await > 0.0);
    let (detail, ready) = readiness(&w, "refusing").await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(detail["state"], "stopped", "{detail}");
    assert!(
        time::OffsetDateTime::parse(
            detail["stopped_since"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{detail}"
    );
    assert!(
        !ready.to_string().contains("secret-reason"),
        "why it stopped is for the logs and the database, not for the public: {ready}"
    );
    // A projection whose projector never started has no tables yet.
    let (never, _) = readiness(&w, "never_started").await;
    assert_eq!(never["state"], "unprepared", "{never}");
    assert_eq!(
        metric(&w, "registro_projection_stopped", "never_started").await,
        0.0
    );

    // The audit trail is not held up by it.
    let position = give_grade(&w).await;
    let audit = Projector::new(Arc::clone(&w.store), Arc::new(AuditTrail));
    catch_up_until(&audit, async || {
        w.store
            .projection_reached("audit", w.a, position)
            .await
            .unwrap()
    })
    .await;
    let page = body(
        w.call(
            Method::GET,
            &format!(
                "/schools/{}/audit?action=GradeRecorded&min_position={position}",
                w.a
            ),
            Some(&w.token(Role::Auditor)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(page["entries"][0]["school_seq"], position, "{page}");
    assert_eq!(
        metric(&w, "registro_projection_stopped", "audit").await,
        0.0
    );
    assert_eq!(readiness(&w, "audit").await.0["state"], "ok");
    assert_eq!(readiness(&w, "refusing").await.0["state"], "stopped");
}

#[tokio::test]
async fn sqlite_a_stopped_projection_is_reported_and_the_others_go_on() {
    a_stopped_projection_is_reported_and_the_others_go_on(false).await;
}

#[tokio::test]
async fn postgres_a_stopped_projection_is_reported_and_the_others_go_on() {
    a_stopped_projection_is_reported_and_the_others_go_on(true).await;
}
