-- 0002: row-level security keyed on the request's school. Released migrations are never
-- edited: add a new file instead.
--
-- Defence in depth (docs/decisions/0009-row-level-security.md): every query of registro already
-- names its school; these policies make PostgreSQL itself refuse rows of any other school, so a
-- query that forgets its `WHERE school_id = ...` returns nothing instead of every school's data.
--
-- A transaction sees and writes the rows of one school after
--     SELECT set_config('registro.school', '<school uuid>', true);   -- true: this transaction only
-- and the rows of every school only after declaring that it works across schools
--     SELECT set_config('registro.all_schools', 'on', true);
-- (the subscription read, the migration runner, whole-instance maintenance). With neither it
-- sees nothing and may write nothing. An unset setting reads as NULL, and as '' once a
-- transaction of the same session has set it: both select no school.
--
-- FORCE holds the tables' owner to the policies as well. Superusers and roles with BYPASSRLS
-- are never held by them: registro must connect as an ordinary role (docs/operations.md).
--
-- Every later table that carries school_id (projections' read models included) gets the same
-- three statements and policy, with these two functions.

-- The school the current transaction works for; NULL when none is set.
CREATE FUNCTION registro_school() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('registro.school', true), '')::uuid $$;

-- True when the current transaction declared that it works across schools.
CREATE FUNCTION registro_all_schools() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(current_setting('registro.all_schools', true) = 'on', false) $$;

-- The policies call the functions inside scalar subqueries: each is then evaluated once per
-- statement (an InitPlan), not once per row, and `school_id = (SELECT registro_school())`
-- remains usable as an index condition. Queries that name their school keep using the primary
-- keys and indexes (uuid and text equality are leakproof, so the planner may use them under the
-- policy).

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON events
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));

ALTER TABLE school_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE school_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON school_heads
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON idempotency_keys
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));

ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE subject_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON subject_keys
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));
