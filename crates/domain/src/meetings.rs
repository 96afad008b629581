//! Parent-teacher meetings (colloqui), the stream `meetings-<teacher>`: a teacher offers slots
//! with a capacity; the guardians of the students they teach book and cancel; the teacher
//! cancels a slot with a reason. One stream per teacher keeps each slot's capacity a local
//! invariant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Time};

use crate::directory::Directory;
use crate::{PersonId, SlotId};

/// The most bookings one slot may take.
pub const MAX_CAPACITY: u8 = 50;

/// The stream of a teacher's meetings.
#[must_use]
pub fn stream(teacher: PersonId) -> String {
    format!("meetings-{teacher}")
}

/// What a teacher or a guardian asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MeetingCommand {
    /// The teacher offers a slot.
    OfferSlot {
        /// The new slot's id.
        slot: SlotId,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// When it starts.
        #[serde(with = "crate::hour_minute")]
        start: Time,
        /// When it ends.
        #[serde(with = "crate::hour_minute")]
        end: Time,
        /// How many bookings it takes.
        capacity: u8,
        /// Where (a room, or "online").
        place: String,
    },
    /// The teacher cancels a slot, with a reason.
    CancelSlot {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
    },
    /// A guardian books a slot for a student of theirs.
    Book {
        /// The slot.
        slot: SlotId,
        /// The student the meeting is about.
        student: PersonId,
    },
    /// The guardian cancels their booking.
    CancelBooking {
        /// The slot.
        slot: SlotId,
        /// The student it was about.
        student: PersonId,
    },
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MeetingEvent {
    /// A slot was offered.
    SlotOffered {
        /// The slot.
        slot: SlotId,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// When it starts.
        #[serde(with = "crate::hour_minute")]
        start: Time,
        /// When it ends.
        #[serde(with = "crate::hour_minute")]
        end: Time,
        /// How many bookings it takes.
        capacity: u8,
        /// Where.
        place: String,
    },
    /// A slot was cancelled; its bookings with it.
    SlotCancelled {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
    },
    /// A guardian booked a slot.
    MeetingBooked {
        /// The slot.
        slot: SlotId,
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
    /// A booking was cancelled by its guardian.
    BookingCancelled {
        /// The slot.
        slot: SlotId,
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
}

impl crate::StoredEvent for MeetingEvent {}

impl MeetingEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 4] = [
        "SlotOffered",
        "SlotCancelled",
        "MeetingBooked",
        "BookingCancelled",
    ];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::SlotOffered { .. } => Self::TYPE_NAMES[0],
            Self::SlotCancelled { .. } => Self::TYPE_NAMES[1],
            Self::MeetingBooked { .. } => Self::TYPE_NAMES[2],
            Self::BookingCancelled { .. } => Self::TYPE_NAMES[3],
        }
    }
}

/// Why a command was refused. Shown to teachers and families, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeetingError {
    /// Only the teacher offers and cancels their slots.
    #[error("solo il docente offre e annulla i propri colloqui")]
    NotTheTeacher,
    /// The slot's times or capacity do not fit.
    #[error("orario o numero di posti non validi (da 1 a {MAX_CAPACITY} posti)")]
    BadSlot,
    /// In the past.
    #[error("la data è già passata")]
    Past,
    /// No such slot.
    #[error("colloquio sconosciuto")]
    UnknownSlot,
    /// The slot was cancelled.
    #[error("il colloquio è stato annullato")]
    Cancelled,
    /// The slot is full.
    #[error("il colloquio non ha più posti liberi")]
    Full,
    /// Booked already for that student.
    #[error("il colloquio è già prenotato per questo studente")]
    AlreadyBooked,
    /// No such booking.
    #[error("nessuna prenotazione per questo studente")]
    NotBooked,
    /// The booking is another guardian's.
    #[error("la prenotazione è di un altro genitore")]
    NotYourBooking,
    /// The guardian is not the student's, or the teacher does not teach them.
    #[error("il docente non insegna allo studente, o lo studente non è figlio del genitore")]
    NotYourTeacher,
    /// A reason is required, or a text is too long.
    #[error("testo mancante o troppo lungo")]
    Text,
    /// The id is used already.
    #[error("questo colloquio esiste già")]
    Exists,
}

/// The facts a decision needs from outside the stream.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The teacher whose meetings these are.
    pub teacher: PersonId,
    /// Who acts.
    pub actor: PersonId,
    /// Today.
    pub today: Date,
    /// The school directory, now.
    pub directory: &'a Directory,
}

/// A slot as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The day.
    pub date: Date,
    /// When it starts.
    pub start: Time,
    /// When it ends.
    pub end: Time,
    /// How many bookings it takes.
    pub capacity: u8,
    /// Where.
    pub place: String,
    /// Why it was cancelled, if it was.
    pub cancelled: Option<String>,
    /// The bookings standing: (guardian, student), in the order made.
    pub bookings: Vec<(PersonId, PersonId)>,
}

/// The state of a teacher's meetings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meetings {
    slots: BTreeMap<SlotId, Slot>,
}

impl Meetings {
    /// Every slot, by id.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, &Slot)> {
        self.slots.iter().map(|(id, s)| (*id, s))
    }
}

/// Decides what a command means, given the meetings and the context. Pure: no clock, no IO.
///
/// # Errors
/// [`MeetingError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &Meetings,
    command: &MeetingCommand,
    ctx: &Context<'_>,
) -> Result<Vec<MeetingEvent>, MeetingError> {
    use MeetingCommand as C;
    use MeetingEvent as E;
    let live = |slot: SlotId| -> Result<&Slot, MeetingError> {
        let s = state.slots.get(&slot).ok_or(MeetingError::UnknownSlot)?;
        if s.cancelled.is_some() {
            return Err(MeetingError::Cancelled);
        }
        Ok(s)
    };
    let event = match command {
        C::OfferSlot {
            slot,
            date,
            start,
            end,
            capacity,
            place,
        } => {
            if ctx.actor != ctx.teacher {
                return Err(MeetingError::NotTheTeacher);
            }
            if state.slots.contains_key(slot) {
                return Err(MeetingError::Exists);
            }
            if end <= start || *capacity == 0 || *capacity > MAX_CAPACITY {
                return Err(MeetingError::BadSlot);
            }
            if *date < ctx.today {
                return Err(MeetingError::Past);
            }
            let place = place.trim();
            if place.chars().count() > 200 {
                return Err(MeetingError::Text);
            }
            E::SlotOffered {
                slot: *slot,
                date: *date,
                start: *start,
                end: *end,
                capacity: *capacity,
                place: place.to_owned(),
            }
        }
        C::CancelSlot { slot, reason } => {
            if ctx.actor != ctx.teacher {
                return Err(MeetingError::NotTheTeacher);
            }
            live(*slot)?;
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > 500 {
                return Err(MeetingError::Text);
            }
            E::SlotCancelled {
                slot: *slot,
                reason: reason.to_owned(),
            }
        }
        C::Book { slot, student } => {
            let s = live(*slot)?;
            let dir = ctx.directory;
            if !dir.is_linked(ctx.actor, *student) || !dir.teaches_student(ctx.teacher, *student) {
                return Err(MeetingError::NotYourTeacher);
            }
            if s.date < ctx.today {
                return Err(MeetingError::Past);
            }
            if s.bookings.iter().any(|(_, st)| st == student) {
                return Err(MeetingError::AlreadyBooked);
            }
            if s.bookings.len() >= usize::from(s.capacity) {
                return Err(MeetingError::Full);
            }
            E::MeetingBooked {
                slot: *slot,
                guardian: ctx.actor,
                student: *student,
            }
        }
        C::CancelBooking { slot, student } => {
            let s = live(*slot)?;
            if !s.bookings.contains(&(ctx.actor, *student)) {
                return Err(if s.bookings.iter().any(|(_, st)| st == student) {
                    MeetingError::NotYourBooking
                } else {
                    MeetingError::NotBooked
                });
            }
            E::BookingCancelled {
                slot: *slot,
                guardian: ctx.actor,
                student: *student,
            }
        }
    };
    Ok(vec![event])
}

/// Applies an event to the state. Events are facts: applying never fails.
pub fn evolve(state: &mut Meetings, event: &MeetingEvent) {
    use MeetingEvent as E;
    match event {
        E::SlotOffered {
            slot,
            date,
            start,
            end,
            capacity,
            place,
        } => {
            state.slots.insert(
                *slot,
                Slot {
                    date: *date,
                    start: *start,
                    end: *end,
                    capacity: *capacity,
                    place: place.clone(),
                    cancelled: None,
                    bookings: Vec::new(),
                },
            );
        }
        E::SlotCancelled { slot, reason } => {
            if let Some(s) = state.slots.get_mut(slot) {
                s.cancelled = Some(reason.clone());
                s.bookings.clear();
            }
        }
        E::MeetingBooked {
            slot,
            guardian,
            student,
        } => {
            if let Some(s) = state.slots.get_mut(slot) {
                s.bookings.push((*guardian, *student));
            }
        }
        E::BookingCancelled {
            slot,
            guardian,
            student,
        } => {
            if let Some(s) = state.slots.get_mut(slot) {
                s.bookings.retain(|b| *b != (*guardian, *student));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::StoredEvent as _;
    use time::macros::{date, time};

    use super::*;
    use crate::directory::{self, DirectoryCommand};
    use crate::{ClassId, FiscalCode, Role};

    const TODAY: Date = date!(2025 - 10 - 06);

    struct World {
        dir: Directory,
        teacher: PersonId,
        parents: [PersonId; 2],
        children: [PersonId; 2],
        stranger: PersonId,
    }

    fn world() -> World {
        let mut dir = Directory::default();
        let mut run = |c: DirectoryCommand| {
            for e in directory::decide(&dir, &c).unwrap() {
                directory::evolve(&mut dir, &e);
            }
        };
        run(DirectoryCommand::DefineSubject {
            subject: "Inglese".into(),
            scale: crate::grade::Scale::Numeric,
        });
        let person = |date: &str, role| {
            let p = PersonId::new();
            (
                p,
                DirectoryCommand::Register {
                    person: p,
                    fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY{date}Z999"))
                        .unwrap(),
                    family_name: "Rossi".into(),
                    given_name: "Anna".into(),
                    role,
                    birth_date: None,
                },
            )
        };
        let (teacher, t) = person("70A01", Role::Teacher);
        let (p1, c1) = person("71A01", Role::Guardian);
        let (p2, c2) = person("72A01", Role::Guardian);
        let (s1, c3) = person("10A01", Role::Student);
        let (s2, c4) = person("10A02", Role::Student);
        let (stranger, c5) = person("73A01", Role::Guardian);
        for c in [t, c1, c2, c3, c4, c5] {
            run(c);
        }
        let class = ClassId::new();
        run(DirectoryCommand::CreateClass {
            class,
            name: "3C".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher,
            class,
            subject: "Inglese".into(),
        });
        for (p, s) in [(p1, s1), (p2, s2)] {
            run(DirectoryCommand::EnrolStudent { student: s, class });
            run(DirectoryCommand::LinkGuardian {
                guardian: p,
                student: s,
            });
        }
        World {
            dir,
            teacher,
            parents: [p1, p2],
            children: [s1, s2],
            stranger,
        }
    }

    fn run(w: &World, steps: &[(PersonId, MeetingCommand)]) -> Result<Meetings, MeetingError> {
        let mut state = Meetings::default();
        for (actor, c) in steps {
            let ctx = Context {
                teacher: w.teacher,
                actor: *actor,
                today: TODAY,
                directory: &w.dir,
            };
            for e in decide(&state, c, &ctx)? {
                evolve(&mut state, &e);
            }
        }
        Ok(state)
    }

    fn offer(slot: SlotId, capacity: u8) -> MeetingCommand {
        MeetingCommand::OfferSlot {
            slot,
            date: date!(2025 - 10 - 15),
            start: time!(16:00),
            end: time!(16:30),
            capacity,
            place: "Aula 12".into(),
        }
    }

    #[test]
    fn guardians_book_a_teachers_slot_up_to_its_capacity() {
        let w = world();
        let slot = SlotId::new();
        let book = |i: usize| {
            (
                w.parents[i],
                MeetingCommand::Book {
                    slot,
                    student: w.children[i],
                },
            )
        };
        let state = run(&w, &[(w.teacher, offer(slot, 1)), book(0)]).unwrap();
        assert_eq!(state.slots().next().unwrap().1.bookings.len(), 1);
        assert_eq!(
            run(&w, &[(w.teacher, offer(slot, 1)), book(0), book(1)]).unwrap_err(),
            MeetingError::Full
        );
        assert_eq!(
            run(&w, &[(w.teacher, offer(slot, 2)), book(0), book(0)]).unwrap_err(),
            MeetingError::AlreadyBooked
        );
        // Only the guardian who booked cancels the booking.
        let other_cancels = (
            w.parents[1],
            MeetingCommand::CancelBooking {
                slot,
                student: w.children[0],
            },
        );
        assert_eq!(
            run(&w, &[(w.teacher, offer(slot, 2)), book(0), other_cancels]).unwrap_err(),
            MeetingError::NotYourBooking
        );
        // A cancelled booking frees its place.
        let cancel = (
            w.parents[0],
            MeetingCommand::CancelBooking {
                slot,
                student: w.children[0],
            },
        );
        assert!(run(&w, &[(w.teacher, offer(slot, 1)), book(0), cancel, book(1)]).is_ok());
    }

    #[test]
    fn only_the_teacher_offers_and_only_their_students_guardians_book() {
        let w = world();
        let slot = SlotId::new();
        assert_eq!(
            run(&w, &[(w.parents[0], offer(slot, 1))]).unwrap_err(),
            MeetingError::NotTheTeacher
        );
        // Another family's child, or a guardian of nobody the teacher teaches.
        assert_eq!(
            run(
                &w,
                &[
                    (w.teacher, offer(slot, 2)),
                    (
                        w.parents[0],
                        MeetingCommand::Book {
                            slot,
                            student: w.children[1]
                        }
                    )
                ]
            )
            .unwrap_err(),
            MeetingError::NotYourTeacher
        );
        assert_eq!(
            run(
                &w,
                &[
                    (w.teacher, offer(slot, 2)),
                    (
                        w.stranger,
                        MeetingCommand::Book {
                            slot,
                            student: w.children[0]
                        }
                    )
                ]
            )
            .unwrap_err(),
            MeetingError::NotYourTeacher
        );
    }

    #[test]
    fn a_cancelled_slot_takes_no_more_bookings_and_needs_a_reason() {
        let w = world();
        let slot = SlotId::new();
        let cancel = |reason: &str| {
            (
                w.teacher,
                MeetingCommand::CancelSlot {
                    slot,
                    reason: reason.into(),
                },
            )
        };
        assert_eq!(
            run(&w, &[(w.teacher, offer(slot, 2)), cancel(" ")]).unwrap_err(),
            MeetingError::Text
        );
        assert_eq!(
            run(
                &w,
                &[
                    (w.teacher, offer(slot, 2)),
                    cancel("consiglio di classe straordinario"),
                    (
                        w.parents[0],
                        MeetingCommand::Book {
                            slot,
                            student: w.children[0]
                        }
                    )
                ]
            )
            .unwrap_err(),
            MeetingError::Cancelled
        );
        let mut bad = offer(SlotId::new(), 0);
        assert_eq!(
            run(&w, &[(w.teacher, bad.clone())]).unwrap_err(),
            MeetingError::BadSlot
        );
        if let MeetingCommand::OfferSlot { capacity, date, .. } = &mut bad {
            *capacity = 1;
            *date = date!(2025 - 10 - 01);
        }
        assert_eq!(
            run(&w, &[(w.teacher, bad)]).unwrap_err(),
            MeetingError::Past
        );
    }

    #[test]
    fn every_meeting_event_round_trips_through_its_stored_form() {
        let (slot, p) = (SlotId::new(), PersonId::new());
        let events = [
            MeetingEvent::SlotOffered {
                slot,
                date: TODAY,
                start: time!(16:00),
                end: time!(16:30),
                capacity: 3,
                place: "online".into(),
            },
            MeetingEvent::SlotCancelled {
                slot,
                reason: "r".into(),
            },
            MeetingEvent::MeetingBooked {
                slot,
                guardian: p,
                student: p,
            },
            MeetingEvent::BookingCancelled {
                slot,
                guardian: p,
                student: p,
            },
        ];
        for (e, name) in events.iter().zip(MeetingEvent::TYPE_NAMES) {
            assert_eq!(e.type_name(), name);
            assert_eq!(MeetingEvent::from_stored(name, &e.data()).unwrap(), *e);
        }
        assert_eq!(events[0].data()["start"], "16:00");
    }
}
