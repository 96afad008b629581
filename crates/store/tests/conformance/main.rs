//! The conformance suite: every case runs against both adapters, PostgreSQL (a database of its
//! own per test, see `registro-testkit`) and SQLite (a file of its own per test). On PostgreSQL
//! it runs twice: connected as the administrator, and as an ordinary role that row-level
//! security holds, as registro runs in production (`postgres_rls::<case>`), which shows that
//! every statement of the adapter names its school.
//!
//! [`row_level_security`] holds the PostgreSQL-only cases of row-level security itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod cases;
mod harness;
mod predicted_append;
mod row_level_security;
mod subscription_plan;

/// Declares each case once per adapter: `postgres::<case>`, `postgres_rls::<case>` and
/// `sqlite::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::harness::Harness::postgres().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
        mod postgres_rls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::harness::Harness::postgres_rls().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
    };
}

conformance!(
    appended_events_read_back_exactly,
    two_writers_with_the_same_expected_version_exactly_one_wins,
    a_wrong_expected_version_is_a_conflict_and_writes_nothing,
    fifty_writers_at_one_expected_version_one_wins,
    a_moved_guard_stream_is_a_conflict_and_writes_nothing,
    an_export_imported_elsewhere_verifies_with_the_same_head,
    an_idempotent_retry_returns_the_first_result_and_appends_nothing,
    a_command_digest_makes_a_re_decided_retry_a_replay,
    an_append_is_atomic,
    invalid_events_are_rejected_and_nothing_is_written,
    school_sequences_are_dense_under_concurrency,
    the_chain_verifies_and_a_changed_byte_is_found_at_its_school_seq,
    a_removed_last_event_is_found,
    an_open_append_in_one_school_and_an_append_in_another,
    a_subscriber_never_passes_a_transaction_that_commits_late,
    large_reads_come_in_pages,
    sealed_fields_round_trip_and_erasure_keeps_the_chain_verifiable,
    sealed_data_does_not_open_with_another_master_key,
    migrations_are_recorded_and_an_edited_one_is_refused,
    a_commit_wakes_subscribers,
    an_attachment_is_stored_under_its_sha256_and_reads_back,
    storing_the_same_bytes_again_returns_the_first_record,
    concurrent_puts_of_the_same_bytes_all_succeed_with_one_record,
    another_school_cannot_see_an_attachment_and_an_unknown_hash_is_none,
    an_empty_attachment_is_stored,
    an_empty_or_too_long_media_type_is_refused_and_nothing_is_written,
    preparing_a_projection_is_idempotent_and_an_edited_step_is_refused,
    a_projection_checkpoint_starts_at_start_and_moves_with_each_commit,
    a_commit_from_a_moved_checkpoint_is_a_conflict_and_writes_nothing,
    two_instances_committing_from_the_same_checkpoint_exactly_one_wins,
    row_operations_apply_in_order,
    every_cell_type_round_trips_through_a_projection,
    a_projection_query_sees_only_its_school,
    projection_reads_are_batched_from_one_snapshot,
    a_name_that_is_not_a_plain_identifier_is_refused_and_nothing_is_written,
    a_failing_row_operation_rolls_back_the_whole_commit,
    one_instance_at_a_time_holds_a_projection_lease,
    a_rebuild_is_invisible_until_it_is_swapped_in,
    a_swap_that_fails_changes_nothing,
    an_empty_rebuild_empties_the_view,
    beginning_a_rebuild_again_discards_the_first,
    a_rebuild_that_cannot_be_built_is_refused_and_leaves_nothing,
    counting_events_after_a_position_matches_the_subscription,
    a_projections_lag_counts_the_events_after_its_checkpoint,
    a_recorded_stop_is_seen_and_cleared_by_the_commit_that_reaches_it,
    a_projection_has_reached_an_event_once_its_checkpoint_passes_it,
);
