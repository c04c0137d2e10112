-- Operations: worker heartbeats (to find tries whose worker died), pools,
-- task instance pool slots, and runs that missed their deadline.

CREATE TABLE worker (
    name            TEXT PRIMARY KEY,
    hostname        TEXT NOT NULL,
    concurrency     INTEGER NOT NULL,
    started_at      TEXT NOT NULL,
    last_heartbeat  TEXT NOT NULL,
    stopped_at      TEXT
);

CREATE TABLE pool (
    name            TEXT PRIMARY KEY,
    slots           INTEGER NOT NULL,
    description     TEXT,
    updated_at      TEXT NOT NULL
);

ALTER TABLE task_instance ADD COLUMN pool TEXT;
ALTER TABLE task_instance ADD COLUMN pool_slots INTEGER NOT NULL DEFAULT 1;
CREATE INDEX task_instance_active_pool ON task_instance (pool)
    WHERE state IN ('queued', 'running');
CREATE INDEX task_instance_active_dag ON task_instance (dag_id)
    WHERE state IN ('queued', 'running');

ALTER TABLE dag_run ADD COLUMN deadline_missed_at TEXT;

-- Lookups the scheduler makes on every pass that must not grow with the
-- number of old runs: a backfill's unfinished runs, a DAG's queued runs.
CREATE INDEX dag_run_backfill_state ON dag_run (backfill_id, state)
    WHERE backfill_id IS NOT NULL;
CREATE INDEX dag_run_dag_state ON dag_run (dag_id, state, logical_date);
-- Whether a run has task instances waiting to be decided, or in flight: two
-- probes the scheduler makes per run and pass instead of reading them all.
CREATE INDEX task_instance_waiting ON task_instance (run_pk)
    WHERE state IN ('none', 'scheduled', 'up_for_retry');
CREATE INDEX task_instance_in_flight ON task_instance (run_pk)
    WHERE state IN ('queued', 'running');
