//! Communications over HTTP: attachments uploaded by content hash, circulars and notices
//! published to an audience, the read receipt (presa visione), consent (adesione) with a
//! deadline, and withdrawal. The domain rules are in `registro_domain::communications`.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use registro_domain::StoredEvent as _;
use registro_domain::communications::{
    self, Attachment, Audience, Catalogue, CatalogueCommand, CatalogueEvent, Communication,
    CommunicationError, Consent, Group, Kind, Replies, ReplyCommand, ReplyEvent,
};
use registro_domain::directory::Directory;
use registro_domain::{ClassId, CommunicationId, ContentHash, PersonId, Role, SchoolId};
use registro_store::{AttachmentMeta, CommandMetadata, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::cache::{Fold, SchoolStream, Snapshot};
use crate::command::{self, Decision, new_events};
use crate::error::ApiError;
use crate::json::{Json, PathIds, QueryOf};
use crate::school::{Written, command_response, idempotency_key, new_id, record_read};

/// The largest attachment accepted, in bytes (10 MiB).
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// Whether a file's bytes look like its declared type.
type Sniff = fn(&[u8]) -> bool;

/// The media types an attachment may have, each with the check its first bytes must pass, so
/// that a file is what it says it is.
const ALLOWED: [(&str, Sniff); 4] = [
    ("application/pdf", |b| b.starts_with(b"%PDF-")),
    ("image/png", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", |b| b.starts_with(b"\xff\xd8\xff")),
    ("text/plain", |b| {
        std::str::from_utf8(b).is_ok() && !b.contains(&0)
    }),
];

impl SchoolStream for Catalogue {
    const STREAM: &'static str = communications::CATALOGUE_STREAM;
}

impl Fold for Catalogue {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let e = CatalogueEvent::from_stored(event.event_type.as_str(), &event.data)?;
        communications::evolve(self, &e);
        Ok(())
    }
}

impl Fold for Replies {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let e = ReplyEvent::from_stored(event.event_type.as_str(), &event.data)?;
        communications::evolve_reply(self, &e, event.recorded_at);
        Ok(())
    }
}

impl From<command::CommandError<CommunicationError>> for ApiError {
    fn from(e: command::CommandError<CommunicationError>) -> Self {
        use CommunicationError as C;
        match e {
            command::CommandError::Store(e) => e.into(),
            command::CommandError::Refused(e) => {
                let detail = e.to_string();
                match e {
                    C::NotYours | C::NotYourClass | C::NotTheAuthor | C::NotYourStudent => {
                        ApiError::Forbidden(detail)
                    }
                    C::Unknown => ApiError::NotFound,
                    C::UnknownClass => ApiError::NotFoundDetail(detail),
                    C::Exists
                    | C::Withdrawn
                    | C::AlreadyAcknowledged
                    | C::DeadlinePassed
                    | C::NoConsentAsked => ApiError::Conflict(detail),
                    // Named by the field they concern, as shape errors are.
                    C::BadAudience => ApiError::Unprocessable(format!("audience: {detail}")),
                    C::Text => ApiError::Unprocessable(format!("title, body: {detail}")),
                    C::BadAttachments => ApiError::Unprocessable(format!("attachments: {detail}")),
                    C::PastDeadline => {
                        ApiError::Unprocessable(format!("consent_deadline: {detail}"))
                    }
                    C::Reason => ApiError::Unprocessable(format!("reason: {detail}")),
                    C::NotConcerned => ApiError::Unprocessable(format!("student: {detail}")),
                }
            }
        }
    }
}

/// A file's bytes, as sent and as downloaded (for the OpenAPI document only).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryFile(#[expect(dead_code, reason = "describes a body; never built")] Vec<u8>);

/// The stored form of an attachment.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredAttachment {
    /// The SHA-256 of its bytes: name it by this in a communication.
    #[schema(value_type = String,
        example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub hash: ContentHash,
    /// Its media type.
    #[schema(example = "application/pdf")]
    pub media_type: String,
    /// Its size in bytes.
    #[schema(example = 48213)]
    pub size: u64,
}

impl From<AttachmentMeta> for StoredAttachment {
    fn from(m: AttachmentMeta) -> Self {
        Self {
            hash: m.hash,
            media_type: m.media_type,
            size: m.size,
        }
    }
}

/// Uploads an attachment (allegato) for a communication: the principal, the office and the
/// teachers. The body is the file itself, sent with its media type: PDF, PNG, JPEG or plain
/// text (UTF-8), up to 10 MiB; its first bytes must match the type. Stored once per school
/// under its SHA-256: uploading the same file again answers with the same hash.
#[utoipa::path(post, path = "/schools/{school}/attachments", tag = "communications",
    params(("school" = Uuid, Path, description = "The school")),
    request_body(description = "The file: application/pdf, image/png, image/jpeg or text/plain",
        content((BinaryFile = "application/pdf"), (BinaryFile = "image/png"),
            (BinaryFile = "image/jpeg"), (BinaryFile = "text/plain"))),
    responses(
        (status = 201, description = "Stored", body = StoredAttachment),
        (status = 413, description = "Larger than 10 MiB",
            body = crate::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an allowed type, or not what its type says",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload_attachment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let allowed = || ALLOWED.map(|(t, _)| t).join(", ");
    let (media_type, looks_right) =
        ALLOWED
            .iter()
            .find(|(t, _)| *t == declared)
            .ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "Gli allegati possono essere solo: {}.",
                    allowed()
                ))
            })?;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "Un allegato può essere al massimo di {} MiB.",
            MAX_ATTACHMENT_BYTES / (1024 * 1024)
        ))
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_ATTACHMENT_BYTES)
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_ATTACHMENT_BYTES)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(ApiError::Unprocessable("L'allegato è vuoto.".into()));
    }
    if !looks_right(&bytes) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Il contenuto del file non è {media_type}."
        )));
    }
    let meta = state
        .store
        .put_attachment(caller.school, media_type, &bytes)
        .await?;
    Ok((StatusCode::CREATED, Json(StoredAttachment::from(meta))).into_response())
}

/// Who a communication is for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceBody {
    /// The groups: `families` (the students' guardians), `students`, `staff`.
    #[schema(value_type = Vec<String>, example = json!(["families", "students"]))]
    pub groups: BTreeSet<Group>,
    /// The classes; none (or empty) for the whole school. For staff: the teachers of those
    /// classes.
    #[serde(default)]
    #[schema(value_type = Vec<Uuid>, example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub classes: BTreeSet<ClassId>,
}

/// An attachment named in a communication.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The hash an upload answered with.
    #[schema(value_type = String,
        example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub hash: ContentHash,
    /// The file name shown to readers.
    #[schema(example = "programma-gita.pdf")]
    pub name: String,
}

/// A communication to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishCommunication {
    /// `circular` (circolare: the principal's or the office's, numbered per school year) or
    /// `notice` (avviso).
    #[schema(value_type = String, example = "notice")]
    pub kind: Kind,
    /// The title (oggetto), up to 200 characters.
    #[schema(example = "Uscita didattica a Firenze")]
    pub title: String,
    /// The text, up to 20000 characters.
    #[schema(example = "Si comunica che il giorno 20 ottobre la classe visiterà gli Uffizi.")]
    pub body: String,
    /// Who it is for.
    pub audience: AudienceBody,
    /// Attachments uploaded before, up to 10.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// When consent (adesione) is asked of families or students: the last day to answer.
    #[serde(default, with = "registro_domain::iso_date::option")]
    #[schema(value_type = Option<String>, format = Date, example = "2025-10-15")]
    pub consent_deadline: Option<Date>,
}

/// Runs a catalogue command for the caller against the school's cached catalogue.
async fn catalogue_command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    cmd: CatalogueCommand,
) -> Result<registro_store::AppendOutcome, ApiError> {
    let key = idempotency_key(headers, caller)?;
    let (store, school) = (state.store.as_ref(), caller.school);
    let stream = StreamId::parse(communications::CATALOGUE_STREAM)?;
    let today = crate::register::italian_today(state);
    let (cache, directory) = (&state.communications, &state.directory);
    let (cmd, actor, role) = (&cmd, caller.person, caller.role);
    let decide = move || async move {
        let Snapshot { version, state } = cache.current(store, school).await?;
        let directory = directory.current(store, school).await?;
        let ctx = communications::Context {
            actor,
            role,
            today,
            directory: &directory.state,
        };
        let events =
            communications::decide(&state, cmd, &ctx).map_err(command::CommandError::Refused)?;
        Ok(Decision {
            version,
            guards: vec![crate::directory::guard(directory.version)],
            events: new_events(events.iter().map(|e| (e.type_name(), e.data())))?,
        })
    };
    let metadata = CommandMetadata::by(caller.person, caller.role);
    Ok(command::execute(store, school, &stream, metadata, cmd, key, decide).await?)
}

/// Publishes a circular or a notice. Circulars, and anything to the staff or the whole school,
/// are the principal's and the office's; a teacher sends notices to the families or students of
/// the classes they teach. Attachments must have been uploaded first.
#[utoipa::path(post, path = "/schools/{school}/communications", tag = "communications",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = PublishCommunication,
    responses(
        (status = 201, description = "Published; `id` is the communication's", body = Written),
        (status = 403, description = "Not the caller's to send",
            body = crate::Problem, content_type = "application/problem+json"),
        (status = 404, description = "A class of the audience does not exist",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<PublishCommunication>,
) -> Result<Response, ApiError> {
    let mut attachments = Vec::with_capacity(body.attachments.len());
    for (i, a) in body.attachments.into_iter().enumerate() {
        let meta = state
            .store
            .attachment_meta(caller.school, &a.hash)
            .await?
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "attachments[{i}].hash: nessun allegato caricato con questo hash"
                ))
            })?;
        attachments.push(Attachment {
            hash: a.hash,
            name: a.name,
            media_type: meta.media_type,
            size: meta.size,
        });
    }
    let communication = CommunicationId::from_uuid(new_id(&caller, &headers, "communication")?);
    let cmd = CatalogueCommand::Publish {
        communication,
        kind: body.kind,
        title: body.title,
        body: body.body,
        audience: Audience {
            groups: body.audience.groups,
            classes: body.audience.classes,
        },
        attachments,
        consent_deadline: body.consent_deadline,
    };
    let outcome = catalogue_command(&state, &caller, &headers, cmd).await?;
    Ok(command_response(
        StatusCode::CREATED,
        &outcome,
        Some(communication.into()),
    ))
}

/// A withdrawal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// Why.
    #[schema(example = "data errata: sostituita dalla circolare n. 13")]
    pub reason: String,
}

/// Withdraws (annulla) a communication, with a reason: its author or the principal. It stays
/// readable, marked withdrawn, and takes no more receipts or consents.
#[utoipa::path(post, path = "/schools/{school}/communications/{communication}/withdrawal",
    tag = "communications",
    params(("school" = Uuid, Path, description = "The school"),
        ("communication" = Uuid, Path, description = "The communication")),
    request_body = Withdrawal,
    responses(
        (status = 201, description = "Withdrawn", body = Written),
        (status = 409, description = "Withdrawn already",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn withdraw(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, CommunicationId)>,
    headers: HeaderMap,
    Json(body): Json<Withdrawal>,
) -> Result<Response, ApiError> {
    let (_, communication) = ids;
    visible(&state, &caller, communication).await?;
    let cmd = CatalogueCommand::Withdraw {
        communication,
        reason: body.reason,
    };
    let outcome = catalogue_command(&state, &caller, &headers, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// The communication, when the caller may see it; 404 otherwise.
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: CommunicationId,
) -> Result<(std::sync::Arc<Catalogue>, Communication), ApiError> {
    let catalogue = state
        .communications
        .current(state.store.as_ref(), caller.school)
        .await?
        .state;
    let c = catalogue
        .get(id)
        .filter(|c| c.visible_to(&caller.directory, caller.person, &caller.roles))
        .cloned()
        .ok_or(ApiError::NotFound)?;
    Ok((catalogue, c))
}

/// Runs a reply (receipt, consent) for the caller on one communication's stream.
async fn reply_command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: CommunicationId,
    cmd: ReplyCommand,
) -> Result<registro_store::AppendOutcome, ApiError> {
    let (_, communication) = visible(state, caller, id).await?;
    let key = idempotency_key(headers, caller)?;
    let stream = StreamId::parse(communications::replies_stream(id))?;
    let actor = caller.person;
    let decide = |current: &Replies, directory: &Directory, today| {
        let ctx = communications::ReplyContext {
            id,
            communication: Some(&communication),
            actor,
            today,
            directory,
        };
        let events = communications::decide_reply(current, &cmd, &ctx)
            .map_err(command::CommandError::Refused)?;
        Ok(new_events(
            events.iter().map(|e| (e.type_name(), e.data())),
        )?)
    };
    let digest = serde_json::to_value(&cmd).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(crate::register::stream_command(state, caller, key, &stream, &digest, decide).await?)
}

/// Records the caller's read receipt (presa visione) of a communication addressed to them.
#[utoipa::path(post, path = "/schools/{school}/communications/{communication}/receipt",
    tag = "communications",
    params(("school" = Uuid, Path, description = "The school"),
        ("communication" = Uuid, Path, description = "The communication")),
    responses(
        (status = 201, description = "Recorded", body = Written),
        (status = 409, description = "Recorded already, or the communication was withdrawn",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, CommunicationId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, id) = ids;
    let outcome = reply_command(&state, &caller, &headers, id, ReplyCommand::Acknowledge).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// A consent answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// The student it is for: the guardian's minor child, or the adult student themself.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
    /// `given` (aderisce) or `refused` (non aderisce).
    #[schema(value_type = String, example = "given")]
    pub consent: Consent,
}

/// Answers the consent (adesione) a communication asks, for a student, until its deadline: a
/// guardian of a minor, or the student once of age. A later answer replaces an earlier one.
#[utoipa::path(post, path = "/schools/{school}/communications/{communication}/consents",
    tag = "communications",
    params(("school" = Uuid, Path, description = "The school"),
        ("communication" = Uuid, Path, description = "The communication")),
    request_body = ConsentBody,
    responses(
        (status = 201, description = "Recorded", body = Written),
        (status = 403, description = "The caller does not answer for this student",
            body = crate::Problem, content_type = "application/problem+json"),
        (status = 409, description = "No consent asked, the deadline passed, or withdrawn",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn answer_consent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, CommunicationId)>,
    headers: HeaderMap,
    Json(body): Json<ConsentBody>,
) -> Result<Response, ApiError> {
    let (_, id) = ids;
    let cmd = ReplyCommand::AnswerConsent {
        student: body.student,
        consent: body.consent,
    };
    let outcome = reply_command(&state, &caller, &headers, id, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// An attachment as readers see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    /// Its hash: download it at `.../attachments/{hash}`.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", value_type = String)]
    pub hash: ContentHash,
    /// Its file name.
    #[schema(example = "programma-gita.pdf")]
    pub name: String,
    /// Its media type.
    #[schema(example = "application/pdf")]
    pub media_type: String,
    /// Its size in bytes.
    #[schema(example = 48213)]
    pub size: u64,
}

/// A consent as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    /// The student.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
    /// `given` or `refused`.
    #[schema(example = "given", value_type = String)]
    pub consent: Consent,
    /// Who answered.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub by: PersonId,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(example = "2025-10-07T18:30:00Z", value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// A read receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptView {
    /// Who read it.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub person: PersonId,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(example = "2025-10-06T19:02:00Z", value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// Who read and who answered, for the author, the principal and the office.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepliesView {
    /// How many people the communication reaches now.
    #[schema(example = 48)]
    pub recipients: usize,
    /// The receipts, in the order recorded.
    pub receipts: Vec<ReceiptView>,
    /// Each student's consent, when consent is asked.
    pub consents: Vec<ConsentView>,
    /// The students the consent is asked for who have no answer yet.
    #[schema(value_type = Vec<Uuid>, example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub awaiting_consent: Vec<PersonId>,
}

/// A communication as the caller may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommunicationView {
    /// Its id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// `circular` or `notice`.
    #[schema(example = "notice", value_type = String)]
    pub kind: Kind,
    /// A circular's number in its school year.
    #[schema(example = json!(null))]
    pub number: Option<u32>,
    /// Its title.
    #[schema(example = "Uscita didattica a Firenze")]
    pub title: String,
    /// Its text.
    #[schema(example = "Il 3 luglio la classe visiterà gli Uffizi.")]
    pub body: String,
    /// The day it was published.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// Who published it.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub author: PersonId,
    /// Who it is for.
    pub audience: AudienceBody,
    /// Its attachments.
    pub attachments: Vec<AttachmentView>,
    /// When consent is asked, the last day to answer.
    #[schema(example = "2025-10-15", value_type = Option<String>, format = Date)]
    #[serde(with = "registro_domain::iso_date::option")]
    pub consent_deadline: Option<Date>,
    /// Why it was withdrawn, if it was.
    #[schema(example = json!(null))]
    pub withdrawn: Option<String>,
    /// When the caller acknowledged it; null while they have not (or are not addressed).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(example = json!(null), value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<OffsetDateTime>,
    /// The consents of the students the caller answers for (their children, or themself).
    pub my_consents: Vec<ConsentView>,
    /// Everyone's receipts and consents: for its author, the principal and the office only.
    pub replies: Option<RepliesView>,
}

fn consent_view(student: PersonId, a: &communications::ConsentAnswer) -> ConsentView {
    ConsentView {
        student,
        consent: a.consent,
        by: a.by,
        at: a.at,
    }
}

/// The view of `c` for the caller, with its replies.
fn view(
    caller: &Caller,
    id: CommunicationId,
    c: &Communication,
    replies: &Replies,
) -> CommunicationView {
    let dir = &caller.directory;
    let sees_replies = c.author == caller.person
        || caller.roles.contains(&Role::Principal)
        || caller.roles.contains(&Role::Secretary);
    let concerned: BTreeSet<PersonId> = c.audience.students(dir).collect();
    let mine = |s: &PersonId| *s == caller.person || caller.is_guardian_of(*s);
    CommunicationView {
        id: id.into(),
        kind: c.kind,
        number: c.number,
        title: c.title.clone(),
        body: c.body.clone(),
        date: c.date,
        author: c.author,
        audience: AudienceBody {
            groups: c.audience.groups.clone(),
            classes: c.audience.classes.clone(),
        },
        attachments: c
            .attachments
            .iter()
            .map(|a| AttachmentView {
                hash: a.hash,
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                size: a.size,
            })
            .collect(),
        consent_deadline: c.consent_deadline,
        withdrawn: c.withdrawn.clone(),
        acknowledged_at: replies.receipts.get(&caller.person).copied(),
        my_consents: replies
            .consents
            .iter()
            .filter(|(s, _)| mine(s))
            .map(|(s, a)| consent_view(*s, a))
            .collect(),
        replies: sees_replies.then(|| {
            let mut receipts: Vec<ReceiptView> = replies
                .receipts
                .iter()
                .map(|(p, at)| ReceiptView {
                    person: *p,
                    at: *at,
                })
                .collect();
            receipts.sort_by_key(|r| r.at);
            RepliesView {
                recipients: dir
                    .people()
                    .filter(|(p, _)| c.audience.reaches(dir, *p))
                    .count(),
                receipts,
                consents: replies
                    .consents
                    .iter()
                    .map(|(s, a)| consent_view(*s, a))
                    .collect(),
                awaiting_consent: if c.consent_deadline.is_some() {
                    concerned
                        .iter()
                        .filter(|s| !replies.consents.contains_key(s))
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                },
            }
        }),
    }
}

async fn replies(
    state: &AppState,
    caller: &Caller,
    id: CommunicationId,
) -> Result<Replies, ApiError> {
    let stream = StreamId::parse(communications::replies_stream(id))?;
    let snapshot = state
        .streams
        .current::<Replies>(state.store.as_ref(), caller.school, &stream)
        .await?;
    Ok(std::sync::Arc::unwrap_or_clone(snapshot.state))
}

/// The students whose data a view shows to staff: those named in its consents (the access log
/// records such reads).
fn students_shown(v: &CommunicationView) -> BTreeSet<PersonId> {
    v.my_consents
        .iter()
        .chain(v.replies.iter().flat_map(|r| &r.consents))
        .map(|c| c.student)
        .chain(
            v.replies
                .iter()
                .flat_map(|r| r.awaiting_consent.iter().copied()),
        )
        .collect()
}

/// One communication, when addressed to the caller, written by them, or read by the principal,
/// the office or a teacher of its classes. Its author, the principal and the office also see
/// who read it and every consent.
#[utoipa::path(get, path = "/schools/{school}/communications/{communication}",
    tag = "communications",
    params(("school" = Uuid, Path, description = "The school"),
        ("communication" = Uuid, Path, description = "The communication")),
    responses((status = 200, description = "The communication", body = CommunicationView)))]
pub async fn communication(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, CommunicationId)>,
) -> Result<Json<CommunicationView>, ApiError> {
    let (_, id) = ids;
    let (_, c) = visible(&state, &caller, id).await?;
    let replies = replies(&state, &caller, id).await?;
    let v = view(&caller, id, &c, &replies);
    record_read(&state, &caller, students_shown(&v), "communication.replies").await?;
    Ok(Json(v))
}

/// Which page of communications.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only those published before this one (the last id of the previous page).
    pub before: Option<Uuid>,
    /// How many, newest first (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u8>,
}

/// The communications the caller may see, newest first, with their own receipt and consents
/// (and, for what they wrote or as principal or office, everyone's).
#[utoipa::path(get, path = "/schools/{school}/communications", tag = "communications",
    params(("school" = Uuid, Path, description = "The school"), ListQuery),
    responses((status = 200, description = "The communications", body = Vec<CommunicationView>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<ListQuery>,
) -> Result<Json<Vec<CommunicationView>>, ApiError> {
    let limit = usize::from(query.limit.unwrap_or(20));
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Unprocessable("limit: da 1 a 100".into()));
    }
    let catalogue = state
        .communications
        .current(state.store.as_ref(), caller.school)
        .await?
        .state;
    let page: Vec<(CommunicationId, &Communication)> = catalogue
        .all()
        .rev()
        .filter(|(id, _)| query.before.is_none_or(|b| *id.as_uuid() < b))
        .filter(|(_, c)| c.visible_to(&caller.directory, caller.person, &caller.roles))
        .take(limit)
        .collect();
    let mut views = Vec::with_capacity(page.len());
    for (id, c) in page {
        let replies = replies(&state, &caller, id).await?;
        views.push(view(&caller, id, c, &replies));
    }
    let shown: BTreeSet<PersonId> = views.iter().flat_map(students_shown).collect();
    record_read(&state, &caller, shown, "communication.replies").await?;
    Ok(Json(views))
}

/// A file name safe in a quoted header parameter (ASCII, no quotes or backslashes), and its
/// RFC 8187 form for the rest.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Downloads an attachment of a communication the caller may see.
#[utoipa::path(get,
    path = "/schools/{school}/communications/{communication}/attachments/{hash}",
    tag = "communications",
    params(("school" = Uuid, Path, description = "The school"),
        ("communication" = Uuid, Path, description = "The communication"),
        ("hash" = String, Path, description = "The attachment's SHA-256, hex")),
    responses((status = 200, description = "The file, with its own media type",
        content((BinaryFile = "application/pdf"), (BinaryFile = "image/png"),
            (BinaryFile = "image/jpeg"), (BinaryFile = "text/plain"))),
        (status = 404, description = "No such attachment of a communication the caller sees",
            body = crate::Problem, content_type = "application/problem+json")))]
pub async fn download_attachment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, CommunicationId, String)>,
) -> Result<Response, ApiError> {
    let (_, id, hash) = ids;
    let hash: ContentHash = hash.parse().map_err(|_| ApiError::NotFound)?;
    let (_, c) = visible(&state, &caller, id).await?;
    let named = c
        .attachments
        .iter()
        .find(|a| a.hash == hash)
        .ok_or(ApiError::NotFound)?;
    let (meta, bytes) = state
        .store
        .attachment(caller.school, &hash)
        .await?
        .ok_or(ApiError::NotFound)?;
    let media_type = if meta.media_type == "text/plain" {
        "text/plain; charset=utf-8".to_owned()
    } else {
        meta.media_type
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| ApiError::Internal(e.into()));
    h.insert(header::CONTENT_TYPE, value(&media_type)?);
    h.insert(
        header::CONTENT_DISPOSITION,
        value(&content_disposition(&named.name))?,
    );
    h.insert(header::ETAG, value(&format!("\"{hash}\""))?);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_types_are_checked_by_their_first_bytes() {
        let check = |t: &str, b: &[u8]| ALLOWED.iter().find(|(n, _)| *n == t).unwrap().1(b);
        assert!(check("application/pdf", b"%PDF-1.7 ..."));
        assert!(!check("application/pdf", b"<html>"));
        assert!(check("image/png", b"\x89PNG\r\n\x1a\n...."));
        assert!(!check("image/png", b"\xff\xd8\xff"));
        assert!(check("image/jpeg", b"\xff\xd8\xff\xe0"));
        assert!(check("text/plain", "Circolare n. 1 — è".as_bytes()));
        assert!(!check("text/plain", b"\xff\xfe"));
        assert!(!check("text/plain", b"a\0b"));
    }

    #[test]
    fn file_names_are_quoted_safely_and_kept_whole_in_their_encoded_form() {
        assert_eq!(
            content_disposition("gita \"Firenze\" è.pdf"),
            "attachment; filename=\"gita _Firenze_ _.pdf\"; \
             filename*=UTF-8''gita%20%22Firenze%22%20%C3%A8.pdf"
        );
    }
}
