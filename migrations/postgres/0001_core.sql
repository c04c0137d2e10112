-- Core metadata: DAGs and their versions, runs, task instances, tries and logs.

CREATE TABLE dag (
    dag_id          TEXT PRIMARY KEY,
    fileloc         TEXT NOT NULL,
    version_id      BIGINT NOT NULL,
    description     TEXT,
    schedule        TEXT,
    tags            JSONB NOT NULL DEFAULT '[]',
    is_paused       BOOLEAN NOT NULL DEFAULT FALSE,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_version (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id          TEXT NOT NULL,
    hash            TEXT NOT NULL,
    source          TEXT NOT NULL,
    definition      JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (dag_id, hash)
);

CREATE TABLE import_error (
    fileloc         TEXT PRIMARY KEY,
    message         TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_run (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id              TEXT NOT NULL REFERENCES dag (dag_id),
    run_id              TEXT NOT NULL,
    run_type            TEXT NOT NULL,
    state               TEXT NOT NULL,
    version_id          BIGINT NOT NULL REFERENCES dag_version (id),
    logical_date        TIMESTAMPTZ NOT NULL,
    data_interval_start TIMESTAMPTZ NOT NULL,
    data_interval_end   TIMESTAMPTZ NOT NULL,
    conf                JSONB NOT NULL DEFAULT '{}',
    queued_at           TIMESTAMPTZ NOT NULL,
    start_date          TIMESTAMPTZ,
    end_date            TIMESTAMPTZ,
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_run_state ON dag_run (state);
CREATE INDEX dag_run_dag_logical ON dag_run (dag_id, logical_date DESC);

CREATE TABLE task_instance (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_pk          BIGINT NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    dag_id          TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    try_number      INTEGER NOT NULL DEFAULT 0,
    max_tries       INTEGER NOT NULL,
    hostname        TEXT,
    worker          TEXT,
    queued_at       TIMESTAMPTZ,
    start_date      TIMESTAMPTZ,
    end_date        TIMESTAMPTZ,
    duration_ms     BIGINT,
    next_try_at     TIMESTAMPTZ,
    error           TEXT,
    result          JSONB,
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
    start_date      TIMESTAMPTZ NOT NULL,
    end_date        TIMESTAMPTZ,
    duration_ms     BIGINT,
    error           TEXT,
    PRIMARY KEY (ti_id, try_number)
);

CREATE TABLE task_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ti_id           BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    try_number      INTEGER NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    stream          TEXT NOT NULL,
    line            TEXT NOT NULL
);
CREATE INDEX task_log_ti ON task_log (ti_id, try_number, id);
