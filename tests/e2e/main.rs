//! End-to-end tests: the real `registro` binary, run as an operator runs it, against real
//! storage (an SQLite file in a fresh data directory, a PostgreSQL database of its own).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

mod database_restart;
mod generate;
mod identity;
mod migrate;
mod portability;
mod project;
mod projector_faults;
mod rebuild;
mod school_day;
mod serve;
mod token;
mod verify;
