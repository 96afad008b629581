-- 0004: a projector's stop at an event it cannot apply (SQLite). Released migrations are never
-- edited. Same columns and rules as migrations/postgres/0005_projection_stops.sql: the position
-- of the event it stopped at (tx always 0 here), why, and since when; NULL while it runs.

ALTER TABLE projection_checkpoints ADD COLUMN stopped_tx INTEGER CHECK (stopped_tx >= 0);
ALTER TABLE projection_checkpoints ADD COLUMN stopped_id INTEGER CHECK (stopped_id >= 0);
ALTER TABLE projection_checkpoints ADD COLUMN stopped_reason TEXT;
-- UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ
ALTER TABLE projection_checkpoints ADD COLUMN stopped_since TEXT;
