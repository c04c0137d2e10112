-- The message templates of error and fatal records, by service: a
-- message with its variable words (those with a digit) masked, when it was
-- first and last seen, and how often. `kafka_consume` adds to it with each
-- batch; `anomaly_scan` raises `new_log_template` for templates first seen
-- in its window.
CREATE TABLE log_template (
    service         TEXT NOT NULL,
    template        TEXT NOT NULL,
    -- One message that had it, as written.
    example         TEXT NOT NULL,
    first_seen      TIMESTAMPTZ NOT NULL,
    last_seen       TIMESTAMPTZ NOT NULL,
    records         BIGINT NOT NULL,
    PRIMARY KEY (service, template)
);
CREATE INDEX log_template_first_seen ON log_template (first_seen);
