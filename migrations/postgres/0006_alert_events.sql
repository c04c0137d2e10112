-- What happened to alerts, for notifications: an alert's start (`firing`)
-- and its end (`resolved`), at most one of each per alert, written in the
-- same transaction as the change itself. The `alert_notify` kind sends
-- each event to every channel (email, Slack) and notes which have it, so
-- a crash or a failing channel neither loses an event nor sends one twice
-- to a channel that took it.
CREATE TABLE alert_event (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alert (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    -- The channels that took it, as a JSON array of names.
    delivered       JSONB NOT NULL DEFAULT '[]',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- Set once every channel took it, or when it was given up.
    done_at         TIMESTAMPTZ,
    UNIQUE (alert_id, event)
);
CREATE INDEX alert_event_pending ON alert_event (id) WHERE done_at IS NULL;
