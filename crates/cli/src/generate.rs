//! `registro generate`: a realistic school year, written through the API's own commands.
//!
//! The generator plays every part of a school year (the office, the teachers, the families,
//! the principal chairing the class councils) against the API in-process ([`LocalApi`]): each
//! action is the HTTP request a client would send, with its token, checked by the guard, the
//! policy and the domain's rules, and appended by the command executor. Nothing is inserted
//! directly. "Today" moves with the simulated calendar, so that every rule about today (lessons
//! are signed on the day or after, slots are booked before their date) holds as in service.
//!
//! Everything is derived from the seed: the people (synthetic names and fiscal codes with the
//! place code `Z999`, which no municipality has), the timetables, who is absent on which day,
//! every mark. Each write carries an idempotency key numbered in order, so the ids the API
//! derives from it are the same for the same seed, and each request an id numbered likewise
//! (a staff read records it in the access log): the same seed gives the same events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use registro_api::LocalApi;
use registro_api::auth::{KeySet, LocalIssuer, TokenVerifier};
use registro_domain::directory::DirectoryCommand;
use registro_domain::justification::is_adult_on;
use registro_domain::{FiscalCode, PersonId, Role, SchoolId};
use registro_store::EventStore;
use serde_json::{Value, json};
use time::{Date, Month, Weekday};
use tower::ServiceExt as _;
use uuid::Uuid;

/// How big a school to generate, and from which seed.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Students, spread over the classes.
    pub students: u32,
    /// Classes, five years of a liceo in sections A, B, C...
    pub classes: u32,
    /// School days simulated, spread evenly over the school year's lesson days.
    pub days: u32,
    /// The seed every choice derives from.
    pub seed: u64,
    /// The school year, by the year it starts in.
    pub year: i32,
}

/// The weekly hours of a first-year liceo scientifico's subjects (30 hours over six days), and
/// whether a subject is graded with judgements (religion) instead of numbers.
const SUBJECTS: [(&str, u8, bool); 10] = [
    ("Italiano", 5, false),
    ("Latino", 3, false),
    ("Inglese", 3, false),
    ("Storia e geografia", 3, false),
    ("Matematica", 5, false),
    ("Fisica", 3, false),
    ("Scienze naturali", 3, false),
    ("Disegno e storia dell'arte", 2, false),
    ("Scienze motorie e sportive", 2, false),
    ("Religione cattolica", 1, true),
];
const WEEKDAYS: [Weekday; 6] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
];
const HOURS_A_DAY: u8 = 5;
/// A teacher's chair (cattedra): about 18 hours a week.
const TEACHER_HOURS: u32 = 18;
/// Grades per subject and term (numeric subjects; religion has half).
const GRADES_PER_TERM: usize = 6;
const JUDGEMENTS: [&str; 5] = ["sufficiente", "discreto", "buono", "distinto", "ottimo"];
const GIVEN_NAMES: [&str; 24] = [
    "Sofia",
    "Giulia",
    "Aurora",
    "Alice",
    "Ginevra",
    "Emma",
    "Giorgia",
    "Beatrice",
    "Anna",
    "Vittoria",
    "Chiara",
    "Martina",
    "Leonardo",
    "Francesco",
    "Alessandro",
    "Lorenzo",
    "Mattia",
    "Andrea",
    "Gabriele",
    "Riccardo",
    "Tommaso",
    "Edoardo",
    "Matteo",
    "Giuseppe",
];
const FAMILY_NAMES: [&str; 24] = [
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
    "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo",
    "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani",
];
const TOPICS: [&str; 8] = [
    "Introduzione all'unità didattica",
    "Lettura e analisi del testo",
    "Esercitazione guidata",
    "Ripasso in vista della verifica",
    "Correzione della verifica",
    "Lavoro di gruppo",
    "Approfondimento",
    "Laboratorio",
];
const PROGRESS_EVERY: u32 = 10;

/// A small deterministic generator (SplitMix64): no dependency, the same sequence everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    /// Roughly normal noise, mean 0, within `±2 × spread`, its deviation about 0.6 × spread
    /// (half the sum of four uniform draws in `-spread..=spread`).
    fn noise(&mut self, spread: i64) -> i64 {
        let spread = spread.max(1);
        let width = u64::try_from(2 * spread + 1).unwrap_or(1);
        let sum: i64 = (0..4)
            .map(|_| i64::try_from(self.below(width)).unwrap_or(0) - spread)
            .sum();
        sum / 2
    }
}

/// What the generator wrote, by kind of request, and the school's events.
#[derive(Debug, Default)]
pub struct Summary {
    /// Requests answered, by what they did.
    pub requests: BTreeMap<&'static str, u64>,
    /// The events the school has at the end.
    pub events: u64,
    /// The school days simulated.
    pub days: u32,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "school days   {}", self.days)?;
        for (what, n) in &self.requests {
            writeln!(f, "{what:<24}{n}")?;
        }
        write!(f, "events        {}", self.events)
    }
}

/// The school generated.
#[derive(Debug)]
pub struct Generated {
    /// The new school's id.
    pub school: SchoolId,
    /// What was written.
    pub summary: Summary,
}

/// The school's id for a name and a seed: the same school again for the same pair.
#[must_use]
pub fn school_id(name: &str, seed: u64) -> SchoolId {
    SchoolId::from_uuid(Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("registro generate|{name}|{seed}").as_bytes(),
    ))
}

#[derive(Debug, Clone)]
struct Person {
    id: PersonId,
    code: FiscalCode,
}

/// An adult's birth date: 35 to 60 years before the school year.
fn adult_birth(rng: &mut Rng, year: i32) -> anyhow::Result<Date> {
    Ok(
        date(year - 35 - i32::try_from(rng.below(25))?, Month::March, 1)?
            + time::Duration::days(i64::try_from(rng.below(300))?),
    )
}

#[derive(Debug)]
struct Student {
    person: Person,
    class: usize,
    birth: Date,
    guardians: Vec<Person>,
    /// Ability per subject, in tenths of a mark.
    ability: Vec<i64>,
    /// Absences per thousand days.
    absence_rate: u64,
}

#[derive(Debug)]
struct Class {
    id: Uuid,
    students: Vec<usize>,
    /// The teacher of each subject (index into `SUBJECTS`).
    teachers: Vec<PersonId>,
    /// The subject of each hour, per weekday (index into `WEEKDAYS`).
    timetable: Vec<Vec<usize>>,
}

/// The parts of the simulated school and the API they talk to.
struct School {
    api: LocalApi,
    issuer: LocalIssuer,
    id: SchoolId,
    prefix: String,
    today: Date,
    router: axum::Router,
    tokens: HashMap<PersonId, String>,
    codes: HashMap<PersonId, FiscalCode>,
    key: u64,
    requests: u64,
    people: u32,
    summary: Summary,
}

impl School {
    /// The next person's fiscal code.
    fn new_code(&mut self, birth: Date, female: bool) -> anyhow::Result<FiscalCode> {
        self.people += 1;
        fiscal_code(self.people, birth, female)
    }

    fn set_today(&mut self, today: Date) {
        self.today = today;
        self.router = self.api.on(today);
    }

    fn token(&mut self, who: PersonId) -> anyhow::Result<String> {
        if let Some(t) = self.tokens.get(&who) {
            return Ok(t.clone());
        }
        let code = self
            .codes
            .get(&who)
            .context("a person without a fiscal code")?;
        let token = self
            .issuer
            .issue(self.id, code, Duration::from_secs(24 * 3600))?;
        self.tokens.insert(who, token.clone());
        Ok(token)
    }

    /// Sends one request as `who`, with the next idempotency key for a write; a refusal is an
    /// error (the generator only asks what the rules allow).
    async fn call(
        &mut self,
        what: &'static str,
        who: PersonId,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let token = self.token(who)?;
        // Numbered request ids too: a staff read records its request's id in the access log.
        self.requests += 1;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.prefix))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-request-id", format!("generate-{}", self.requests));
        if method != Method::GET {
            self.key += 1;
            request = request.header("idempotency-key", format!("generate-{}", self.key));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body)?))?,
            None => request.body(Body::empty())?,
        };
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        if !status.is_success() {
            bail!(
                "{what} {method} {path} on {}: {status} {}",
                self.today,
                String::from_utf8_lossy(&bytes)
            );
        }
        *self.summary.requests.entry(what).or_default() += 1;
        if bytes.is_empty() || status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn post(
        &mut self,
        what: &'static str,
        who: PersonId,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        self.call(what, who, Method::POST, path, Some(body)).await
    }

    /// The id a write answered with.
    async fn post_id(
        &mut self,
        what: &'static str,
        who: PersonId,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Uuid> {
        let written = self.post(what, who, path, body).await?;
        let id = written["id"]
            .as_str()
            .with_context(|| format!("{what}: no id in {written}"))?;
        Ok(id.parse()?)
    }
}

/// A synthetic fiscal code: `X` and the person's number in letters, the birth date as the
/// law encodes it, and the place code `Z999` that no municipality has.
fn fiscal_code(number: u32, birth: Date, female: bool) -> anyhow::Result<FiscalCode> {
    let mut letters = String::from("XX");
    let mut n = number;
    for _ in 0..4 {
        letters.insert(2, char::from(b'A' + u8::try_from(n % 26)?));
        n /= 26;
    }
    const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
    let month = char::from(MONTHS[usize::from(u8::from(birth.month())) - 1]);
    let day = birth.day() + if female { 40 } else { 0 };
    let first15 = format!(
        "{letters}{:02}{month}{day:02}Z999",
        birth.year().rem_euclid(100)
    );
    FiscalCode::with_check_character(&first15).map_err(|e| anyhow::anyhow!("{first15}: {e}"))
}

/// Easter Sunday (the anonymous Gregorian algorithm).
fn easter(year: i32) -> anyhow::Result<Date> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Ok(Date::from_calendar_date(
        year,
        Month::try_from(u8::try_from(month)?)?,
        u8::try_from(day)?,
    )?)
}

/// The school year's calendar: its holidays, its lesson days (Monday to Saturday, from the
/// first Monday from 12 September), the terms, and the `days` days simulated among them.
struct Calendar {
    holidays: Vec<Date>,
    first_term_end: Date,
    second_term_start: Date,
    second_term_end: Date,
    days: Vec<Date>,
}

fn date(year: i32, month: Month, day: u8) -> anyhow::Result<Date> {
    Ok(Date::from_calendar_date(year, month, day)?)
}

fn calendar(year: i32, days: u32) -> anyhow::Result<Calendar> {
    let next = year + 1;
    let mut holidays = vec![
        date(year, Month::November, 1)?,
        date(year, Month::December, 8)?,
        date(next, Month::April, 25)?,
        date(next, Month::May, 1)?,
        date(next, Month::June, 2)?,
    ];
    let mut d = date(year, Month::December, 23)?;
    while d <= date(next, Month::January, 6)? {
        holidays.push(d);
        d = d.next_day().context("calendar")?;
    }
    let easter = easter(next)?;
    let mut d = easter - time::Duration::days(3);
    while d <= easter + time::Duration::days(2) {
        holidays.push(d);
        d = d.next_day().context("calendar")?;
    }
    holidays.sort();
    holidays.dedup();
    let mut start = date(year, Month::September, 12)?;
    while start.weekday() != Weekday::Monday {
        start = start.next_day().context("calendar")?;
    }
    let last_possible = date(next, Month::June, 30)?;
    let mut lesson_days = Vec::new();
    let mut d = start;
    while d <= last_possible && lesson_days.len() < 200 + 40 {
        if d.weekday() != Weekday::Sunday && holidays.binary_search(&d).is_err() {
            lesson_days.push(d);
        }
        d = d.next_day().context("calendar")?;
    }
    // At most 200 lesson days in a year; `days` of them are simulated, evenly spread.
    lesson_days.truncate(200);
    let wanted = usize::try_from(days)?.clamp(1, lesson_days.len());
    let simulated: Vec<Date> = (0..wanted)
        .map(|i| lesson_days[i * lesson_days.len() / wanted])
        .collect();
    let last = *lesson_days.last().context("no lesson days")?;
    Ok(Calendar {
        holidays,
        first_term_end: date(year, Month::December, 22)?,
        second_term_start: date(next, Month::January, 7)?,
        second_term_end: last,
        days: simulated,
    })
}

/// A mark in tenths as written: `6`, `6½`, between 3 and 10.
fn mark_text(tenths: i64) -> String {
    let halves = ((tenths.clamp(30, 100) + 2) / 5).clamp(6, 20);
    if halves % 2 == 0 {
        format!("{}", halves / 2)
    } else {
        format!("{}½", halves / 2)
    }
}

/// A judgement for a mark in tenths.
fn judgement(tenths: i64) -> &'static str {
    match tenths {
        ..60 => JUDGEMENTS[0],
        60..70 => JUDGEMENTS[1],
        70..80 => JUDGEMENTS[2],
        80..90 => JUDGEMENTS[3],
        _ => JUDGEMENTS[4],
    }
}

/// Generates a school named `name` into `store`, reporting each simulated day's number to
/// `progress`.
///
/// # Errors
/// When the school exists already, or a request is refused (a bug of the generator or of a
/// rule), or the store fails.
#[expect(
    clippy::too_many_lines,
    reason = "one school year, told in order: the office, the days, the scrutini"
)]
pub async fn generate(
    store: Arc<dyn EventStore>,
    name: &str,
    sizes: Sizes,
    mut progress: impl FnMut(u32, u32),
) -> anyhow::Result<Generated> {
    if sizes.classes == 0 || sizes.students < sizes.classes {
        bail!("at least one class, and at least one student per class");
    }
    // Class names run 1A..5Z; fiscal codes number people in four letters.
    if sizes.classes > 5 * 26 || sizes.students > 100_000 {
        bail!("at most 130 classes and 100000 students");
    }
    let school = school_id(name, sizes.seed);
    if store.school_head(school).await?.is_some() {
        bail!(
            "the school {school} ({name}, seed {}) exists already: choose another name or \
             seed, or another data directory",
            sizes.seed
        );
    }
    let issuer = LocalIssuer::generate();
    let verifier = TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(issuer.clone()))),
    );
    let api = LocalApi::new(Arc::clone(&store), verifier)?;
    let cal = calendar(sizes.year, sizes.days)?;
    let year = sizes.year;
    let mut rng = Rng::new(sizes.seed);
    let first_day = date(year, Month::September, 1)?;
    let mut s = School {
        router: api.on(first_day),
        api,
        issuer,
        id: school,
        prefix: format!("/schools/{school}"),
        today: first_day,
        tokens: HashMap::new(),
        codes: HashMap::new(),
        key: 0,
        requests: 0,
        people: 0,
        summary: Summary::default(),
    };
    // The principal, registered as the software itself (as `registro add-person` does); then
    // the office.
    let code = s.new_code(adult_birth(&mut rng, year)?, true)?;
    let principal = Person {
        id: PersonId::from_uuid(Uuid::new_v5(school.as_uuid(), b"principal")),
        code,
    };
    s.codes.insert(principal.id, principal.code.clone());
    registro_api::directory::execute_as_system(
        store.as_ref(),
        school,
        &DirectoryCommand::Register {
            person: principal.id,
            fiscal_code: principal.code.clone(),
            family_name: "Dirigente".into(),
            given_name: (*rng.pick(&GIVEN_NAMES)).into(),
            role: Role::Principal,
            birth_date: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("registering the principal: {e}"))?;
    *s.summary.requests.entry("directory").or_default() += 1;
    let p = principal.id;
    let staff = |s: &mut School, rng: &mut Rng| -> anyhow::Result<FiscalCode> {
        let birth = adult_birth(rng, year)?;
        let female = rng.chance(600);
        s.new_code(birth, female)
    };
    let secretary = staff(&mut s, &mut rng)?;
    let secretary = registered(&mut s, &mut rng, p, secretary, "secretary", None).await?;
    for role in ["auditor", "admin"] {
        let code = staff(&mut s, &mut rng)?;
        registered(&mut s, &mut rng, p, code, role, None).await?;
    }
    let office = secretary.id;

    for (subject, _, judged) in SUBJECTS {
        let scale = if judged { "judgement" } else { "numeric" };
        s.post(
            "directory",
            office,
            "/subjects",
            json!({"name": subject, "scale": scale}),
        )
        .await?;
    }
    let holidays: Vec<String> = cal.holidays.iter().map(Date::to_string).collect();
    s.call(
        "calendar",
        office,
        Method::PUT,
        &format!("/years/{year}"),
        Some(json!({
            "terms": [
                {"name": "trimestre", "start": format!("{year}-09-01"),
                    "end": cal.first_term_end.to_string()},
                {"name": "pentamestre", "start": cal.second_term_start.to_string(),
                    "end": cal.second_term_end.to_string()},
            ],
            "holidays": holidays,
        })),
    )
    .await?;

    // Teachers: each subject's hours over all classes, in chairs of about 18 hours.
    let n_classes = usize::try_from(sizes.classes)?;
    let mut teachers_of: Vec<Vec<PersonId>> = Vec::new();
    for (_, hours, _) in SUBJECTS {
        let needed = (sizes.classes * u32::from(hours)).div_ceil(TEACHER_HOURS);
        let mut list = Vec::new();
        for _ in 0..needed {
            let t = staff(&mut s, &mut rng)?;
            let t = registered(&mut s, &mut rng, office, t, "teacher", None).await?;
            list.push(t.id);
        }
        teachers_of.push(list);
    }

    // Classes: 1A, 2A, ... 5A, 1B, ...; each subject's teacher by turns.
    let mut classes = Vec::new();
    for c in 0..n_classes {
        let grade = c % 5 + 1;
        let section = char::from(b'A' + u8::try_from((c / 5) % 26)?);
        let name = format!("{grade}{section}");
        let id = s
            .post_id("directory", office, "/classes", json!({"name": name}))
            .await?;
        let mut teachers = Vec::new();
        for (i, (subject, _, _)) in SUBJECTS.iter().enumerate() {
            let list = &teachers_of[i];
            let teacher = list[c * list.len() / n_classes];
            s.post(
                "directory",
                office,
                &format!("/classes/{id}/teachers"),
                json!({"teacher": teacher, "subject": subject}),
            )
            .await?;
            teachers.push(teacher);
        }
        // The week's 30 hours, each subject's hours shuffled over the six days.
        let mut week: Vec<usize> = SUBJECTS
            .iter()
            .enumerate()
            .flat_map(|(i, (_, h, _))| std::iter::repeat_n(i, usize::from(*h)))
            .collect();
        for i in (1..week.len()).rev() {
            let j = usize::try_from(rng.below(u64::try_from(i)? + 1))?;
            week.swap(i, j);
        }
        let timetable: Vec<Vec<usize>> = week
            .chunks(usize::from(HOURS_A_DAY))
            .map(<[usize]>::to_vec)
            .collect();
        let mut hours = Vec::new();
        for (weekday, subjects) in WEEKDAYS.iter().zip(&timetable) {
            for (n, subject) in (1u8..).zip(subjects) {
                hours.push(json!({
                    "weekday": weekday.to_string().to_lowercase(),
                    "number": n,
                    "start": format!("{:02}:00", 7 + n),
                    "end": format!("{:02}:00", 8 + n),
                    "subject": SUBJECTS[*subject].0,
                    "teacher": teachers[*subject],
                }));
            }
        }
        s.call(
            "calendar",
            office,
            Method::PUT,
            &format!("/classes/{id}/timetable"),
            Some(json!({ "hours": hours })),
        )
        .await?;
        classes.push(Class {
            id,
            students: Vec::new(),
            teachers,
            timetable,
        });
    }

    // Students, with one or two guardians each; a fifth-year student turns 18 during the year.
    let mut students: Vec<Student> = Vec::new();
    for n in 0..sizes.students {
        let class = usize::try_from(n)? % n_classes;
        let grade = i32::try_from(class % 5)?;
        let birth = date(year - 14 - grade, Month::January, 1)?
            + time::Duration::days(i64::try_from(rng.below(365))?);
        let female = rng.chance(500);
        let person = s.new_code(birth, female)?;
        let person = registered(&mut s, &mut rng, office, person, "student", Some(birth)).await?;
        let class_id = classes[class].id;
        s.post(
            "directory",
            office,
            &format!("/classes/{class_id}/students"),
            json!({"student": person.id}),
        )
        .await?;
        let mut guardians = Vec::new();
        for _ in 0..(1 + u32::from(rng.chance(600))) {
            let g = staff(&mut s, &mut rng)?;
            let g = registered(&mut s, &mut rng, office, g, "guardian", None).await?;
            s.post(
                "directory",
                office,
                &format!("/students/{}/guardians", person.id),
                json!({"guardian": g.id}),
            )
            .await?;
            guardians.push(g);
        }
        let base = 66 + rng.noise(8);
        let ability = SUBJECTS.iter().map(|_| base + rng.noise(6)).collect();
        // Most students miss few days, some many more: 8% of student-days on average.
        let absence_rate = match rng.below(10) {
            0..=5 => 40 + rng.below(40),
            6..=8 => 90 + rng.below(60),
            _ => 120 + rng.below(50),
        };
        classes[class].students.push(students.len());
        students.push(Student {
            person,
            class,
            birth,
            guardians,
            ability,
            absence_rate,
        });
    }

    // The days. Per class, subject and term, the assessment days among the days with the
    // subject: `true` for a written test (announced a week ahead), `false` for an oral round.
    let terms = [
        (cal.days[0], cal.first_term_end),
        (cal.second_term_start, cal.second_term_end),
    ];
    let term_of = |d: Date| usize::from(d > cal.first_term_end);
    let mut assessments: HashMap<(usize, usize, Date), bool> = HashMap::new();
    for (c, class) in classes.iter().enumerate() {
        for (subject, (_, _, judged)) in SUBJECTS.iter().enumerate() {
            for (start, end) in terms {
                let with_subject: Vec<Date> = cal
                    .days
                    .iter()
                    .copied()
                    .filter(|d| *d >= start && *d <= end)
                    .filter(|d| {
                        weekday_index(*d).is_some_and(|w| class.timetable[w].contains(&subject))
                    })
                    .collect();
                let wanted = if *judged {
                    GRADES_PER_TERM / 2
                } else {
                    GRADES_PER_TERM
                };
                let k = wanted.min(with_subject.len());
                for i in 0..k {
                    // Spread over the term, skipping the first lessons.
                    let day = with_subject[(i + 1) * with_subject.len() / (k + 1)];
                    assessments.insert((c, subject, day), i % 2 == 0 && !*judged);
                }
            }
        }
    }
    let mut marks: HashMap<(usize, usize, usize), Vec<i64>> = HashMap::new();
    let mut notes: HashMap<usize, u32> = HashMap::new();
    let mut pending: Vec<(usize, Uuid, Date)> = Vec::new();
    let mut to_decide: Vec<(usize, Uuid)> = Vec::new();
    let mut circulars: Vec<(Uuid, BTreeSet<PersonId>)> = Vec::new();
    let mut slots: Vec<(PersonId, usize, Uuid, Date)> = Vec::new();
    let mut scrutinised = [false, false];
    let total_days = u32::try_from(cal.days.len())?;
    let circular_every = (cal.days.len() / 20).max(1);
    let meeting_every = (cal.days.len() / 10).max(2);
    for (index, &day) in cal.days.iter().enumerate() {
        // The first term's scrutini, on the first day of the second.
        if !scrutinised[0] && day > cal.first_term_end {
            s.set_today(cal.second_term_start.max(day));
            // What is still open of the term is settled before the council meets; what was
            // never justified stays so.
            decide_justifications(&mut s, &mut rng, year, &classes, &students, &mut to_decide)
                .await?;
            pending.retain(|(_, _, when)| *when > cal.first_term_end);
            scrutini(
                &mut s, &mut rng, p, year, 1, &classes, &students, &marks, &notes,
            )
            .await?;
            scrutinised[0] = true;
        }
        s.set_today(day);
        let weekday = weekday_index(day).context("a lesson on Sunday")?;
        let term = term_of(day);

        // Yesterday's justifications are decided today; today's absences are mostly justified
        // within a few days.
        decide_justifications(&mut s, &mut rng, year, &classes, &students, &mut to_decide).await?;
        let mut still_pending = Vec::new();
        for (student, entry, when) in std::mem::take(&mut pending) {
            if !rng.chance(700) {
                // Not today; a few are never justified (and show as overdue).
                if (day - when).whole_days() < 10 {
                    still_pending.push((student, entry, when));
                }
                continue;
            }
            let st = &students[student];
            let by = if is_adult_on(st.birth, when) {
                st.person.id
            } else {
                rng.pick(&st.guardians).id
            };
            let (category, text) = match rng.below(10) {
                0..=4 => ("health", "Indisposizione"),
                5..=7 => ("family", "Motivi di famiglia"),
                8 => ("transport", "Ritardo del mezzo pubblico"),
                _ => ("other", "Visita programmata"),
            };
            s.post(
                "justification",
                by,
                &format!(
                    "/students/{}/years/{year}/attendance/{entry}/justification",
                    st.person.id
                ),
                json!({"category": category, "text": text}),
            )
            .await?;
            to_decide.push((student, entry));
        }
        pending = still_pending;

        for (c, class) in classes.iter().enumerate() {
            let hours = &class.timetable[weekday];
            // The register: who is absent, late or leaves early, by the first hour's teacher.
            let first = class.teachers[hours[0]];
            let mut away = BTreeSet::new();
            for &student in &class.students {
                let st = &students[student];
                let roll = rng.below(1000);
                let kind = if roll < st.absence_rate {
                    Some(("absence", None))
                } else if roll < st.absence_rate + 20 {
                    Some(("late_entry", Some(*rng.pick(&["09:10", "09:20", "10:05"]))))
                } else if roll < st.absence_rate + 30 {
                    Some(("early_exit", Some(*rng.pick(&["11:00", "12:00"]))))
                } else {
                    None
                };
                let Some((kind, at)) = kind else { continue };
                let mut body = json!({"date": day.to_string(), "kind": kind});
                if let Some(at) = at {
                    body["at"] = json!(at);
                }
                let entry = s
                    .post_id(
                        kind,
                        first,
                        &format!("/students/{}/years/{year}/attendance", st.person.id),
                        body,
                    )
                    .await?;
                pending.push((student, entry, day));
                if kind == "absence" {
                    away.insert(student);
                }
            }
            for (hour, &subject) in (1u8..).zip(hours) {
                let teacher = class.teachers[subject];
                let topic = rng.pick(&TOPICS);
                s.post(
                    "lesson signed",
                    teacher,
                    &format!("/classes/{}/lessons", class.id),
                    json!({"date": day.to_string(), "hour": hour,
                        "topic": format!("{}: {topic}", SUBJECTS[subject].0),
                        "activity": "Lezione frontale"}),
                )
                .await?;
                if rng.chance(200)
                    && let Some(next) = cal.days.get(index + 1)
                {
                    s.post(
                        "homework",
                        teacher,
                        &format!("/classes/{}/homework", class.id),
                        json!({"subject": SUBJECTS[subject].0,
                            "text": "Esercizi assegnati a lezione", "due": next.to_string()}),
                    )
                    .await?;
                }
                // A written test announced a week ahead.
                if let Some(ahead) = cal.days.get(index + 6)
                    && assessments.get(&(c, subject, *ahead)) == Some(&true)
                {
                    s.post(
                        "test scheduled",
                        teacher,
                        &format!("/classes/{}/tests", class.id),
                        json!({"subject": SUBJECTS[subject].0, "date": ahead.to_string(),
                            "description": "Verifica scritta"}),
                    )
                    .await?;
                }
                let Some(&is_written) = assessments.get(&(c, subject, day)) else {
                    continue;
                };
                let (subject_name, _, judged) = SUBJECTS[subject];
                let present: Vec<usize> = class
                    .students
                    .iter()
                    .copied()
                    .filter(|st| !away.contains(st))
                    .collect();
                let mut given = Vec::new();
                for &student in &present {
                    let tenths = students[student].ability[subject] + rng.noise(8);
                    marks
                        .entry((student, subject, term))
                        .or_default()
                        .push(tenths);
                    given.push((student, tenths));
                }
                if is_written {
                    let list: Vec<Value> = given
                        .iter()
                        .map(|(st, t)| {
                            json!({"student": students[*st].person.id, "mark": mark_text(*t)})
                        })
                        .collect();
                    if !list.is_empty() {
                        s.post(
                            "grades (class test)",
                            teacher,
                            &format!("/classes/{}/years/{year}/grades", class.id),
                            json!({"subject": subject_name, "kind": "written",
                                "date": day.to_string(), "description": "Verifica scritta",
                                "marks": list}),
                        )
                        .await?;
                    }
                } else {
                    for (st, t) in given {
                        let (mark, kind) = if judged {
                            (judgement(t).to_owned(), "oral")
                        } else if subject_name.starts_with("Scienze motorie") {
                            (mark_text(t), "practical")
                        } else {
                            (mark_text(t), "oral")
                        };
                        let mut body = json!({"subject": subject_name, "kind": kind,
                            "mark": mark, "date": day.to_string()});
                        if judged {
                            body["scale"] = json!("judgement");
                        }
                        s.post(
                            "grade",
                            teacher,
                            &format!("/students/{}/years/{year}/grades", students[st].person.id),
                            body,
                        )
                        .await?;
                    }
                }
            }
            // Now and then a note: to one student, or to the whole class.
            if rng.chance(40) && !class.students.is_empty() {
                let student = *rng.pick(&class.students);
                let teacher = class.teachers[*rng.pick(hours)];
                let (kind, text) = if rng.chance(500) {
                    ("disciplinary", "Disturba ripetutamente la lezione")
                } else {
                    ("annotation", "Non ha portato il materiale")
                };
                if kind == "disciplinary" {
                    *notes.entry(student).or_default() += 1;
                }
                s.post(
                    "note",
                    teacher,
                    &format!(
                        "/students/{}/years/{year}/notes",
                        students[student].person.id
                    ),
                    json!({"kind": kind, "text": text, "date": day.to_string()}),
                )
                .await?;
            } else if rng.chance(10) {
                let teacher = class.teachers[*rng.pick(hours)];
                s.post(
                    "class note",
                    teacher,
                    &format!("/classes/{}/notes", class.id),
                    json!({"kind": "disciplinary", "text": "La classe è rumorosa",
                        "date": day.to_string()}),
                )
                .await?;
            }
        }

        // A circular to the families every ten days (of 200); families read it over the next
        // days.
        if index % circular_every == circular_every / 3 {
            let number = circulars.len() + 1;
            let id = s
                .post_id(
                    "communication",
                    office,
                    "/communications",
                    json!({"kind": "circular", "title": format!("Circolare n. {number}"),
                        "body": "Si comunica alle famiglie quanto segue.",
                        "audience": {"groups": ["families"]}}),
                )
                .await?;
            circulars.push((id, BTreeSet::new()));
        }
        let recent = circulars.len().saturating_sub(2);
        for (id, read) in &mut circulars[recent..] {
            for st in &students {
                for g in &st.guardians {
                    if !read.contains(&g.id) && rng.chance(300) {
                        read.insert(g.id);
                        s.call(
                            "receipt",
                            g.id,
                            Method::POST,
                            &format!("/communications/{id}/receipt"),
                            None,
                        )
                        .await?;
                    }
                }
            }
        }

        // Meetings: every twenty days (of 200) each teacher offers an hour three days ahead, which
        // families of their students book at once.
        if index % meeting_every == meeting_every / 4
            && let Some(&on) = cal.days.get(index + 3)
        {
            for (subject, list) in teachers_of.iter().enumerate() {
                for &teacher in list {
                    let slot = s
                        .post_id(
                            "meeting slot",
                            teacher,
                            &format!("/teachers/{teacher}/meetings"),
                            json!({"date": on.to_string(), "start": "15:00", "end": "16:00",
                                "capacity": 4, "place": "Aula colloqui"}),
                        )
                        .await?;
                    slots.push((teacher, subject, slot, on));
                }
            }
        }
        for (teacher, subject, slot, on) in std::mem::take(&mut slots) {
            if on <= day {
                continue;
            }
            let mine: Vec<usize> = classes
                .iter()
                .filter(|c| c.teachers[subject] == teacher)
                .flat_map(|c| c.students.iter().copied())
                .collect();
            let mut booked = BTreeSet::new();
            for _ in 0..4 {
                if mine.is_empty() || !rng.chance(600) {
                    continue;
                }
                let student = *rng.pick(&mine);
                if !booked.insert(student) {
                    continue;
                }
                let st = &students[student];
                let guardian = rng.pick(&st.guardians).id;
                s.post(
                    "meeting booked",
                    guardian,
                    &format!("/teachers/{teacher}/meetings/{slot}/bookings"),
                    json!({"student": st.person.id}),
                )
                .await?;
            }
        }
        let done = u32::try_from(index)? + 1;
        if done % PROGRESS_EVERY == 0 || done == total_days {
            progress(done, total_days);
        }
    }
    if !scrutinised[0] {
        s.set_today(cal.second_term_start);
        decide_justifications(&mut s, &mut rng, year, &classes, &students, &mut to_decide).await?;
        scrutini(
            &mut s, &mut rng, p, year, 1, &classes, &students, &marks, &notes,
        )
        .await?;
    }
    let last = *cal.days.last().context("no days")?;
    s.set_today(
        last.next_day()
            .context("calendar")?
            .max(cal.second_term_end),
    );
    decide_justifications(&mut s, &mut rng, year, &classes, &students, &mut to_decide).await?;
    scrutini(
        &mut s, &mut rng, p, year, 2, &classes, &students, &marks, &notes,
    )
    .await?;

    s.summary.days = total_days;
    s.summary.events = store.school_head(school).await?.map_or(0, |h| h.last_seq);
    Ok(Generated {
        school,
        summary: s.summary,
    })
}

/// Registers the person with `code` and `role` (by `by`), and returns them with the id the
/// API gave.
async fn registered(
    s: &mut School,
    rng: &mut Rng,
    by: PersonId,
    code: FiscalCode,
    role: &str,
    birth: Option<Date>,
) -> anyhow::Result<Person> {
    let mut body = json!({
        "fiscal_code": code.as_str(),
        "family_name": rng.pick(&FAMILY_NAMES),
        "given_name": rng.pick(&GIVEN_NAMES),
        "role": role,
    });
    if let Some(birth) = birth {
        body["birth_date"] = json!(birth.to_string());
    }
    let id = PersonId::from_uuid(s.post_id("directory", by, "/people", body).await?);
    s.codes.insert(id, code.clone());
    Ok(Person { id, code })
}

/// The class's first teacher decides the justifications submitted: almost all accepted.
async fn decide_justifications(
    s: &mut School,
    rng: &mut Rng,
    year: i32,
    classes: &[Class],
    students: &[Student],
    submitted: &mut Vec<(usize, Uuid)>,
) -> anyhow::Result<()> {
    for (student, entry) in std::mem::take(submitted) {
        let st = &students[student];
        let teacher = classes[st.class].teachers[0];
        let body = if rng.chance(970) {
            json!({"accept": true})
        } else {
            json!({"accept": false, "reason": "Motivazione non sufficiente"})
        };
        s.post(
            "justification decided",
            teacher,
            &format!(
                "/students/{}/years/{year}/attendance/{entry}/justification/decision",
                st.person.id
            ),
            body,
        )
        .await?;
    }
    Ok(())
}

fn weekday_index(d: Date) -> Option<usize> {
    WEEKDAYS.iter().position(|w| *w == d.weekday())
}

/// A term's scrutini, class by class, chaired by the principal: opened, the sitting with the
/// whole council, each student's grades (from the term's marks) and conduct, the year-end
/// outcome at the final one, closed and published.
#[expect(
    clippy::too_many_arguments,
    reason = "the school's state, passed apart"
)]
async fn scrutini(
    s: &mut School,
    rng: &mut Rng,
    principal: PersonId,
    year: i32,
    term: u8,
    classes: &[Class],
    students: &[Student],
    marks: &HashMap<(usize, usize, usize), Vec<i64>>,
    notes: &HashMap<usize, u32>,
) -> anyhow::Result<()> {
    let term_index = usize::from(term) - 1;
    let today = s.today.to_string();
    for class in classes {
        let base = format!("/classes/{}/years/{year}/scrutini", class.id);
        s.post(
            "scrutinio",
            principal,
            &base,
            json!({"term": term, "level": "upper_secondary"}),
        )
        .await?;
        let mut attendees: Vec<PersonId> = class.teachers.clone();
        attendees.push(principal);
        attendees.sort();
        attendees.dedup();
        s.post(
            "scrutinio",
            principal,
            &format!("{base}/{term}/session"),
            json!({"date": today, "attendees": attendees}),
        )
        .await?;
        for &student in &class.students {
            let mut grades = serde_json::Map::new();
            let mut below = Vec::new();
            for (subject, (name, _, judged)) in SUBJECTS.iter().enumerate() {
                let given = marks.get(&(student, subject, term_index));
                let tenths = match given {
                    Some(m) if !m.is_empty() => {
                        m.iter().sum::<i64>() / i64::try_from(m.len()).unwrap_or(1)
                    }
                    _ => students[student].ability[subject],
                };
                let grade = if *judged {
                    judgement(tenths).to_owned()
                } else {
                    let whole = ((tenths + 5) / 10).clamp(3, 10);
                    if whole < 6 {
                        below.push(*name);
                    }
                    whole.to_string()
                };
                grades.insert((*name).to_owned(), json!(grade));
            }
            let conduct = match notes.get(&student).copied().unwrap_or(0) {
                0 => 8 + i64::try_from(rng.below(3))?,
                1 | 2 => 8,
                _ => 7,
            };
            let id = students[student].person.id;
            s.post(
                "scrutinio deliberation",
                principal,
                &format!("{base}/{term}/deliberations"),
                json!({"student": id, "grades": grades, "conduct": conduct.to_string()}),
            )
            .await?;
            if term == 2 {
                // The council checks the hours missed against the limit (rules.md section 1):
                // over it, without an exemption, the student is not admitted.
                let attendance = s
                    .call(
                        "attendance checked",
                        principal,
                        Method::GET,
                        &format!("/students/{id}/years/{year}/attendance"),
                        None,
                    )
                    .await?;
                let over_limit = attendance["over_limit"].as_bool() == Some(true);
                let (outcome, subjects, reasons) = match below.len() {
                    _ if over_limit => ("not_admitted", Vec::new(), "Assenze oltre il limite"),
                    0 => ("admitted", Vec::new(), ""),
                    1..=3 => ("judgement_suspended", below, ""),
                    _ => ("not_admitted", Vec::new(), "Gravi insufficienze"),
                };
                s.post(
                    "scrutinio outcome",
                    principal,
                    &format!("{base}/{term}/outcomes"),
                    json!({"student": id, "outcome": outcome, "subjects": subjects,
                        "reasons": reasons}),
                )
                .await?;
            }
        }
        s.post(
            "scrutinio",
            principal,
            &format!("{base}/{term}/closure"),
            Value::Null,
        )
        .await?;
        s.post(
            "scrutinio",
            principal,
            &format!("{base}/{term}/publication"),
            Value::Null,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_written_in_halves_between_three_and_ten() {
        assert_eq!(mark_text(62), "6");
        assert_eq!(mark_text(64), "6½");
        assert_eq!(mark_text(68), "7");
        assert_eq!(mark_text(5), "3");
        assert_eq!(mark_text(130), "10");
    }

    #[test]
    fn easter_falls_where_the_calendar_says() {
        assert_eq!(easter(2026).unwrap(), date(2026, Month::April, 5).unwrap());
        assert_eq!(easter(2025).unwrap(), date(2025, Month::April, 20).unwrap());
    }

    #[test]
    fn the_calendar_has_two_hundred_lesson_days_at_most_and_spreads_fewer() {
        let full = calendar(2025, 500).unwrap();
        assert_eq!(full.days.len(), 200);
        assert!(full.days.iter().all(|d| d.weekday() != Weekday::Sunday));
        assert!(full.days.iter().all(|d| !full.holidays.contains(d)));
        let few = calendar(2025, 10).unwrap();
        assert_eq!(few.days.len(), 10);
        assert!(few.days.iter().any(|d| *d > few.first_term_end));
    }

    #[test]
    fn synthetic_fiscal_codes_are_valid_distinct_and_marked() {
        let birth = date(2010, Month::May, 3).unwrap();
        let a = fiscal_code(1, birth, false).unwrap();
        let b = fiscal_code(2, birth, true).unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().contains("Z999"), "{a:?}");
        assert_eq!(&b.as_str()[9..11], "43");
    }

    #[test]
    fn the_random_numbers_are_the_same_for_a_seed() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, (0..5).map(|_| Rng::new(43).next()).collect::<Vec<_>>());
        let noise: Vec<i64> = (0..1000).map(|_| Rng::new(1).noise(8)).collect();
        assert!(noise.iter().all(|n| (-16..=16).contains(n)));
    }
}
