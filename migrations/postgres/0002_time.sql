-- Scheduling in time: the scheduler's place in each DAG's timetable,
-- backfills, and at most one scheduled or backfill run per logical date.

ALTER TABLE dag ADD COLUMN last_scheduled_start TIMESTAMPTZ;
ALTER TABLE dag ADD COLUMN last_scheduled_end   TIMESTAMPTZ;

CREATE TABLE backfill (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id          TEXT NOT NULL REFERENCES dag (dag_id),
    from_date       TIMESTAMPTZ NOT NULL,
    to_date         TIMESTAMPTZ NOT NULL,
    reprocess       TEXT NOT NULL,
    backwards       BOOLEAN NOT NULL,
    max_active_runs INTEGER NOT NULL,
    conf            JSONB NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ
);
CREATE INDEX backfill_dag ON backfill (dag_id, id DESC);

ALTER TABLE dag_run ADD COLUMN backfill_id BIGINT REFERENCES backfill (id);
CREATE INDEX dag_run_backfill ON dag_run (backfill_id) WHERE backfill_id IS NOT NULL;
CREATE UNIQUE INDEX dag_run_interval ON dag_run (dag_id, logical_date)
    WHERE run_type <> 'manual';
