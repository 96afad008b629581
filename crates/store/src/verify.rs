//! Verification of a school's hash chain: recompute every hash from the stored fields and
//! check the links, the density of `school_seq` and the recorded head.

use std::collections::HashMap;

use registro_domain::SchoolId;

use crate::canonical::recompute_hash;
use crate::envelope::{Hash, RecordedEvent, StreamId};
use crate::error::StoreError;
use crate::{EventStore, Sealed};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every event verifies.
    Intact {
        /// How many events the school has.
        events: u64,
        /// The hash of the last event (`None` for a school with no events).
        head: Option<Hash>,
    },
    /// The chain breaks at `school_seq`; everything before it verifies.
    Broken {
        /// The first position that does not verify.
        school_seq: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// How many events verification reads at a time.
pub const VERIFY_PAGE: usize = 1_000;

/// Verifies the chain of `school`, reading it in pages (constant memory).
///
/// # Errors
/// Only storage failures; a broken chain is a [`Verification::Broken`], not an error.
pub async fn verify_school(
    store: &dyn EventStore,
    school: SchoolId,
) -> Result<Verification, StoreError> {
    let mut expected_seq = 1_u64;
    let mut prev = Hash::GENESIS;
    loop {
        let page = store
            .read_school(school, expected_seq, VERIFY_PAGE, Sealed::Keep)
            .await?;
        let done = page.len() < VERIFY_PAGE;
        for e in page {
            let broken = |reason: String| Verification::Broken {
                school_seq: expected_seq,
                reason,
            };
            if e.school_seq != expected_seq {
                return Ok(broken(format!(
                    "school_seq {} follows {}: event {expected_seq} is missing",
                    e.school_seq,
                    expected_seq - 1
                )));
            }
            if e.prev_hash != prev {
                return Ok(broken(format!(
                    "prev_hash {} does not match the previous event's hash {prev}",
                    e.prev_hash
                )));
            }
            let computed = recompute_hash(&e)?;
            if computed != e.hash {
                return Ok(broken(format!(
                    "stored hash {} but the stored fields hash to {computed}: the event was altered",
                    e.hash
                )));
            }
            prev = e.hash;
            expected_seq += 1;
        }
        if done {
            break;
        }
    }
    let events = expected_seq - 1;
    let head = store.school_head(school).await?;
    match head {
        Some(h) if h.last_seq != events || h.hash != prev => Ok(Verification::Broken {
            school_seq: events + 1,
            reason: format!(
                "the recorded head is event {} with hash {}, but the log ends at event {events} \
                 with hash {prev}: events were removed",
                h.last_seq, h.hash
            ),
        }),
        None if events > 0 => Ok(Verification::Broken {
            school_seq: 1,
            reason: "the school has events but no recorded head".into(),
        }),
        _ => Ok(Verification::Intact {
            events,
            head: (events > 0).then_some(prev),
        }),
    }
}

/// The `school_seq` of the school's event whose hash is `hash`, if any: a head published
/// earlier is still in a verified log exactly when it is found here (the log before it was
/// neither removed nor rewritten). Reads in pages, without opening sealed data.
///
/// # Errors
/// Only storage failures.
pub async fn find_hash(
    store: &dyn EventStore,
    school: SchoolId,
    hash: &Hash,
) -> Result<Option<u64>, StoreError> {
    let mut from = 1;
    loop {
        let page = store
            .read_school(school, from, VERIFY_PAGE, Sealed::Keep)
            .await?;
        if let Some(e) = page.iter().find(|e| e.hash == *hash) {
            return Ok(Some(e.school_seq));
        }
        match page.last() {
            Some(last) if page.len() == VERIFY_PAGE => from = last.school_seq + 1,
            _ => return Ok(None),
        }
    }
}

/// The type of the event that records a subject key's destruction (the domain's
/// `RecordEvent::SealedDataErased`, whose `subject` is the key's).
pub const ERASURE_EVENT: &str = "SealedDataErased";

/// The subject whose key `e` records destroyed, if it is an erasure: an import keeps such a key
/// destroyed whatever a key bundle holds, so that a move never brings erased data back.
#[must_use]
pub fn erased_subject(e: &RecordedEvent) -> Option<registro_domain::PersonId> {
    (e.event_type.as_str() == ERASURE_EVENT)
        .then(|| e.data.get("subject")?.as_str()?.parse().ok())
        .flatten()
}

/// The checks of an import, event by event in `school_seq` order: dense positions from 1,
/// each `prev_hash` the previous event's hash, each hash recomputed from the stored fields,
/// each stream's versions dense from 1, every event of the school.
#[derive(Debug)]
pub struct ChainCheck {
    school: SchoolId,
    next_seq: u64,
    prev: Hash,
    streams: HashMap<StreamId, u64>,
}

impl ChainCheck {
    /// The checks of a school's log from its first event.
    #[must_use]
    pub fn new(school: SchoolId) -> Self {
        Self {
            school,
            next_seq: 1,
            prev: Hash::GENESIS,
            streams: HashMap::new(),
        }
    }

    /// Checks the next event.
    ///
    /// # Errors
    /// [`StoreError::ChainBroken`] naming its `school_seq` (or the one expected there).
    pub fn check(&mut self, e: &RecordedEvent) -> Result<(), StoreError> {
        let broken = |reason: String| StoreError::ChainBroken {
            school_seq: self.next_seq,
            reason,
        };
        if e.school_id != self.school {
            return Err(broken(format!("the event is school {}'s", e.school_id)));
        }
        if e.school_seq != self.next_seq {
            return Err(broken(format!(
                "school_seq {} where {} was expected",
                e.school_seq, self.next_seq
            )));
        }
        if e.prev_hash != self.prev {
            return Err(broken(format!(
                "prev_hash {} does not match the previous event's hash {}",
                e.prev_hash, self.prev
            )));
        }
        let computed = recompute_hash(e)?;
        if computed != e.hash {
            return Err(broken(format!(
                "hash {} but the fields hash to {computed}: the event was altered",
                e.hash
            )));
        }
        let version = self.streams.entry(e.stream_id.clone()).or_insert(0);
        if e.stream_version != *version + 1 {
            return Err(broken(format!(
                "stream {} at version {} after {}",
                e.stream_id, e.stream_version, version
            )));
        }
        *version += 1;
        self.prev = e.hash;
        self.next_seq += 1;
        Ok(())
    }

    /// The events checked so far, and the last one's hash.
    #[must_use]
    pub fn head(&self) -> (u64, Option<Hash>) {
        let events = self.next_seq - 1;
        (events, (events > 0).then_some(self.prev))
    }

    /// The events checked and the last one's hash, once every event is in: they must be
    /// `expected` (an export's manifest).
    ///
    /// # Errors
    /// [`StoreError::ImportRefused`] when the log ends elsewhere (a truncated file, or not the
    /// export the manifest describes).
    pub fn finish(&self, expected: (u64, Option<Hash>)) -> Result<(u64, Option<Hash>), StoreError> {
        let (events, head) = self.head();
        if (events, head) == expected {
            return Ok((events, head));
        }
        let hex = |h: Option<Hash>| h.map_or_else(|| "none".to_owned(), |h| h.to_hex());
        Err(StoreError::ImportRefused(format!(
            "the file ends at event {events} with head {}, but its manifest says {} with head {}: \
             it is truncated or not this export",
            hex(head),
            expected.0,
            hex(expected.1),
        )))
    }
}
