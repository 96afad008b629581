//! The C library's allocator, tuned for a long-running server
//! ([ADR 0034](../../../docs/decisions/0034-allocator-arenas.md)).
//!
//! glibc gives each thread that meets contention an arena of its own, up to eight per core,
//! and keeps what is freed in each for reuse. A server whose requests hop between the async
//! workers and the blocking threads of the embedded database spreads its short-lived
//! allocations over all of them: in the soak, 16 arenas held 100 MB for 24 MB in use, and the
//! resident memory kept growing while the heap did not. [`tune`] caps the arenas at the
//! number of cores and fixes the threshold above which an allocation is its own mapping
//! (given back to the system when freed), which glibc otherwise raises after each large free.
//!
//! Elsewhere (musl, other systems) it does nothing.

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuned {
    /// The arenas are capped at this many; large allocations are mapped on their own.
    Glibc {
        /// The cap on arenas.
        arenas: usize,
    },
    /// Not glibc: nothing to tune.
    Untouched,
}

/// Above this, an allocation is a mapping of its own, unmapped when freed (glibc's initial
/// threshold, kept from rising).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Caps glibc's arenas at `arenas` (at least 1) and fixes the mapping threshold. Call it first
/// thing in `main`, before any thread starts: arenas already made stay.
///
/// # Errors
/// When glibc refuses a setting (it returns 0 for an unknown or out-of-range one).
pub fn tune(arenas: usize) -> Result<Tuned, String> {
    imp::tune(arenas.max(1))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::{MMAP_THRESHOLD, Tuned};

    pub(super) fn tune(arenas: usize) -> Result<Tuned, String> {
        set(libc::M_ARENA_MAX, arenas, "M_ARENA_MAX")?;
        set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD")?;
        Ok(Tuned::Glibc { arenas })
    }

    fn set(param: libc::c_int, value: usize, name: &str) -> Result<(), String> {
        let value =
            libc::c_int::try_from(value).map_err(|_| format!("{name}: {value} too large"))?;
        // SAFETY: mallopt only reads its two integer arguments and changes the allocator's
        // parameters under its own lock; it has no memory-safety preconditions.
        #[allow(unsafe_code)]
        let done = unsafe { libc::mallopt(param, value) };
        if done == 1 {
            Ok(())
        } else {
            Err(format!("glibc refused {name} = {value}"))
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::Tuned;

    pub(super) fn tune(_: usize) -> Result<Tuned, String> {
        Ok(Tuned::Untouched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_settings() {
        let tuned = tune(2).expect("glibc takes them");
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(tuned, Tuned::Glibc { arenas: 2 });
        } else {
            assert_eq!(tuned, Tuned::Untouched);
        }
        assert_eq!(tune(0), tune(1), "at least one arena");
    }
}
