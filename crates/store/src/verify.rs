//! Verification of a school's hash chain: recompute every hash from the stored fields and
//! check the links, the density of `school_seq` and the recorded head.

use registro_domain::SchoolId;

use crate::canonical::recompute_hash;
use crate::envelope::Hash;
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
