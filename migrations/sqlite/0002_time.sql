-- Scheduling in time: the scheduler's place in each DAG's timetable,
-- backfills, and at most one scheduled or backfill run per logical date.

ALTER TABLE dag ADD COLUMN last_scheduled_start TEXT;
ALTER TABLE dag ADD COLUMN last_scheduled_end   TEXT;

CREATE TABLE backfill (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id          TEXT NOT NULL REFERENCES dag (dag_id),
    from_date       TEXT NOT NULL,
    to_date         TEXT NOT NULL,
    reprocess       TEXT NOT NULL,
    backwards       INTEGER NOT NULL,
    max_active_runs INTEGER NOT NULL,
    conf            TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    completed_at    TEXT
);
CREATE INDEX backfill_dag ON backfill (dag_id, id DESC);

ALTER TABLE dag_run ADD COLUMN backfill_id BIGINT REFERENCES backfill (id);
CREATE INDEX dag_run_backfill ON dag_run (backfill_id) WHERE backfill_id IS NOT NULL;
CREATE UNIQUE INDEX dag_run_interval ON dag_run (dag_id, logical_date)
    WHERE run_type <> 'manual';
