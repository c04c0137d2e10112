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
