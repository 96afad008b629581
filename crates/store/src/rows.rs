//! What both adapters do with rows: integer conversions, page limits, and opening the sealed
//! fields of a page of events (the key look-up itself is each adapter's own).

use std::collections::{BTreeSet, HashMap};

use registro_domain::{PersonId, SchoolId};

use crate::MAX_PAGE;
use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::seal::{KeyState, may_hold_sealed, open_fields, sealed_subjects};

/// A read limit as SQL wants it: at least 1, at most [`MAX_PAGE`].
pub(crate) fn page(limit: usize) -> i64 {
    to_i64(limit.clamp(1, MAX_PAGE) as u64)
}

/// Counters and positions are stored as signed 64-bit integers.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stored counters are never negative (the schema checks them).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The data subjects whose keys are needed to open `events`, per school.
pub(crate) fn subjects_by_school(
    events: &[RecordedEvent],
) -> HashMap<SchoolId, BTreeSet<PersonId>> {
    let mut needed: HashMap<SchoolId, BTreeSet<PersonId>> = HashMap::new();
    for e in events.iter().filter(|e| may_hold_sealed(&e.stored_data)) {
        needed
            .entry(e.school_id)
            .or_default()
            .extend(sealed_subjects(&e.data));
    }
    needed
}

/// Opens the sealed fields of the events of `school` with `keys`.
pub(crate) fn open_school_events(
    events: &mut [RecordedEvent],
    school: SchoolId,
    keys: &HashMap<PersonId, KeyState>,
) -> Result<(), StoreError> {
    for e in events
        .iter_mut()
        .filter(|e| e.school_id == school && may_hold_sealed(&e.stored_data))
    {
        open_fields(&mut e.data, school, e.event_id, keys)?;
    }
    Ok(())
}
