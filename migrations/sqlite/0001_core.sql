-- Core metadata: DAGs and their versions, runs, task instances, tries and logs.

CREATE TABLE dag (
    dag_id          TEXT PRIMARY KEY,
    fileloc         TEXT NOT NULL,
    version_id      BIGINT NOT NULL,
    description     TEXT,
    schedule        TEXT,
    tags            TEXT NOT NULL DEFAULT '[]',
    is_paused       INTEGER NOT NULL DEFAULT 0,
    is_active       INTEGER NOT NULL DEFAULT 1,
    updated_at      TEXT NOT NULL
);

CREATE TABLE dag_version (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id          TEXT NOT NULL,
    hash            TEXT NOT NULL,
    source          TEXT NOT NULL,
    definition      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (dag_id, hash)
);

CREATE TABLE import_error (
    fileloc         TEXT PRIMARY KEY,
    message         TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE dag_run (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id              TEXT NOT NULL REFERENCES dag (dag_id),
    run_id              TEXT NOT NULL,
    run_type            TEXT NOT NULL,
    state               TEXT NOT NULL,
    version_id          BIGINT NOT NULL REFERENCES dag_version (id),
    logical_date        TEXT NOT NULL,
    data_interval_start TEXT NOT NULL,
    data_interval_end   TEXT NOT NULL,
    conf                TEXT NOT NULL DEFAULT '{}',
    queued_at           TEXT NOT NULL,
    start_date          TEXT,
    end_date            TEXT,
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_run_state ON dag_run (state);
CREATE INDEX dag_run_dag_logical ON dag_run (dag_id, logical_date DESC);

CREATE TABLE task_instance (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_pk          BIGINT NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    dag_id          TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    try_number      INTEGER NOT NULL DEFAULT 0,
    max_tries       INTEGER NOT NULL,
    hostname        TEXT,
    worker          TEXT,
    queued_at       TEXT,
    start_date      TEXT,
    end_date        TEXT,
    duration_ms     BIGINT,
    next_try_at     TEXT,
    error           TEXT,
    result          TEXT,
    UNIQUE (run_pk, task_id)
);
CREATE INDEX task_instance_state ON task_instance (state);

-- One row per try that a worker started: the record that no try ran twice.
CREATE TABLE task_try (
    ti_id           BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    try_number      INTEGER NOT NULL,
    state           TEXT NOT NULL,
    hostname        TEXT NOT NULL,
    worker          TEXT NOT NULL,
    start_date      TEXT NOT NULL,
    end_date        TEXT,
    duration_ms     BIGINT,
    error           TEXT,
    PRIMARY KEY (ti_id, try_number)
);

CREATE TABLE task_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ti_id           BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    try_number      INTEGER NOT NULL,
    ts              TEXT NOT NULL,
    stream          TEXT NOT NULL,
    line            TEXT NOT NULL
);
CREATE INDEX task_log_ti ON task_log (ti_id, try_number, id);
