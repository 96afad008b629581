-- 0005: a projector's stop at an event it cannot apply (a poison event), recorded beside its
-- checkpoint so that every process sees it (docs/decisions/0022-projection-health.md). Released
-- migrations are never edited: add a new file instead.
--
-- stopped_tx, stopped_id  the position of the event the projector stopped at; NULL while it
--                         runs. Set by the runtime when `apply` refuses the event, cleared by
--                         the commit that moves the checkpoint to it or past it.
-- stopped_reason          why, as the runtime logged it (for operators, never sent to clients)
-- stopped_since           when it first stopped there (a restart that stops at the same event
--                         keeps it)
--
-- All four are set together and cleared together.

ALTER TABLE projection_checkpoints
    ADD COLUMN stopped_tx     bigint CHECK (stopped_tx >= 0),
    ADD COLUMN stopped_id     bigint CHECK (stopped_id >= 0),
    ADD COLUMN stopped_reason text,
    ADD COLUMN stopped_since  timestamptz;
