-- The web UI: its users, their sessions and API tokens, the alerts it
-- shows, and the indexes behind its searches of run and task history.

-- A person or program that signs in. `role` is `viewer`, `operator` or
-- `admin`; the password hash is made and checked by the web layer.
CREATE TABLE app_user (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL
);

-- A signed-in browser, known by the hash of its cookie's token, with the
-- token its forms must carry. Expired sessions are deleted from time to
-- time; until then they are ignored.
CREATE TABLE user_session (
    token_hash      TEXT PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    csrf_token      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX user_session_expires ON user_session (expires_at);
CREATE INDEX user_session_user ON user_session (user_id);

-- A named token a program presents instead of a session, known by its
-- hash; it acts as its user, and only while the user is enabled.
CREATE TABLE api_token (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL,
    last_used_at    TIMESTAMPTZ
);
CREATE INDEX api_token_user ON api_token (user_id, id);

-- Something found wrong in the logs, e.g. an `error_rate_spike` of one
-- service. Raising an alert whose fingerprint is firing updates that row;
-- once resolved, the next raise starts a new one, so at most one alert per
-- fingerprint fires at a time.
CREATE TABLE alert (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    service         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    state           TEXT NOT NULL,
    summary         TEXT NOT NULL,
    details         JSONB NOT NULL DEFAULT '{}',
    first_seen      TIMESTAMPTZ NOT NULL,
    last_seen       TIMESTAMPTZ NOT NULL,
    resolved_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX alert_firing ON alert (fingerprint) WHERE state = 'firing';
CREATE INDEX alert_state ON alert (state, id);
CREATE INDEX alert_service ON alert (service, id);

-- The job history, newest first, filtered by any of these: each index
-- ends in the key so a filtered page is read in order and stops at its
-- limit, however many task instances there are.
CREATE INDEX task_instance_dag_id ON task_instance (dag_id, id);
CREATE INDEX task_instance_state_id ON task_instance (state, id);
CREATE INDEX task_instance_kind_id ON task_instance (kind, id);
CREATE INDEX task_instance_worker_id ON task_instance (worker, id);
CREATE INDEX task_instance_start ON task_instance (start_date, id);

-- A DAG's runs filtered by type (by state uses dag_run_dag_state).
CREATE INDEX dag_run_dag_type ON dag_run (dag_id, run_type, logical_date);
