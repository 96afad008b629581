//! The routes and their OpenAPI description.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::context::REQUEST_ID;
use crate::error::{ApiError, PROBLEM_JSON, Problem, problem_response};
use crate::{AppState, docs, metrics};

/// The OpenAPI document of the API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "registro",
        description = "The API of registro, the event-sourced Italian school electronic register \
                       (registro elettronico). Errors are RFC 9457 problem details; every \
                       response carries an `x-request-id` header."
    ),
    paths(healthz, readyz, metrics_text, openapi_json, docs_page, jwks),
    components(schemas(Problem, Health, Readiness, Checks)),
    modifiers(&EveryOperation),
    tags((name = "operations", description = "Health, readiness, metrics and the API's own description"))
)]
pub struct ApiDoc;

/// What every operation shares, added to each: the `x-request-id` header on every response,
/// `Retry-After` on every 503, and the 500 problem that any route answers when something breaks
/// (a panic included).
#[derive(Debug)]
struct EveryOperation;

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let internal = ResponseBuilder::new()
            .description(
                "Internal error: the cause is logged; the problem carries only the request id",
            )
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        let request_id = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request id: the client's own `x-request-id` when it is short visible \
                 ASCII, otherwise a new UUIDv7. It is on every log line of the request.",
            ))
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before trying again"))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("500".to_owned())
                    .or_insert_with(|| RefOr::T(internal.clone()));
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert(REQUEST_ID.to_owned(), request_id.clone());
                        if status == "503" {
                            response
                                .headers
                                .insert("retry-after".to_owned(), retry_after.clone());
                        }
                    }
                }
            }
        }
    }
}

/// All routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/.well-known/jwks.json", get(jwks))
}

/// The process is alive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The outcome of each readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// `ok` when the database answers.
    database: &'static str,
    /// `ok` when every migration is applied.
    migrations: &'static str,
}

/// The service can take traffic.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    status: &'static str,
    /// The checks that passed.
    checks: Checks,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to take traffic", body = Readiness),
        (status = 503, description = "Not ready: the database does not answer or migrations are \
            pending; `Retry-After` is set", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database does not answer");
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database does not answer.".into(),
        );
    }
    match state.store.migration_status().await {
        Ok(status) if status.is_current() => Json(Readiness {
            status: "ready",
            checks: Checks {
                database: "ok",
                migrations: "ok",
            },
        })
        .into_response(),
        Ok(status) => problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Migrations {:?} are pending: run `registro migrate`.",
                status.pending
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "readiness: migration check failed");
            problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database schema does not match this version of registro.".into(),
            )
        }
    }
}

/// Prometheus metrics of this process (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "application/openmetrics-text"),
    ))]
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object,
        content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A browsable page of the API, self-contained: it loads nothing from other sites.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The page", content_type = "text/html")))]
async fn docs_page() -> Html<&'static str> {
    Html(docs::PAGE)
}

/// The public keys of registro's local token issuer (JWKS), used when no external identity
/// provider is configured.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses(
        (status = 200, description = "The key set (RFC 7517)", body = Object,
            content_type = "application/json"),
        (status = 404, description = "No local issuer: tokens come from the identity provider",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.local_jwks.ok_or(ApiError::NotFound)?;
    Ok(Json(&*keys).into_response())
}
