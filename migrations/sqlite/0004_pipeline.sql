-- The log pipeline: how far each partition has been consumed durably, the
-- staged batches a consume wrote and the hours of records each holds, the
-- Parquet files compaction made of them, quarantined messages, and
-- per-minute metrics per service.

-- Where each partition's next batch starts. A consume records a batch only
-- if this still says the batch's first offset (compare and set), so two
-- consumers of one partition can never both record the same records.
CREATE TABLE consume_offset (
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset     BIGINT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);

-- One staged object: the parsed records of offsets first ..= last of one
-- partition. `object` is absent when every message of the range was
-- quarantined; `removed_at` is set once compaction has taken every hour of
-- it and the object is deleted.
CREATE TABLE staged_batch (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    first_offset    BIGINT NOT NULL,
    last_offset     BIGINT NOT NULL,
    object          TEXT,
    records         INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    bytes           BIGINT NOT NULL,
    created_at      TEXT NOT NULL,
    removed_at      TEXT,
    UNIQUE (topic, kafka_partition, first_offset)
);
CREATE INDEX staged_batch_present ON staged_batch (topic)
    WHERE removed_at IS NULL;

-- One Parquet file: records of one partition and one hour. Planned first
-- (the batches it takes are assigned to it), then written; a file planned
-- but not written is written again, from the same batches, to the same
-- name.
CREATE TABLE compact_output (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    hour            TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    object          TEXT NOT NULL UNIQUE,
    planned_at      TEXT NOT NULL,
    written_at      TEXT,
    row_count       BIGINT,
    bytes           BIGINT,
    UNIQUE (topic, kafka_partition, hour, seq)
);

-- The hours a staged batch has records of, and the file each went to.
CREATE TABLE staged_hour (
    batch_id        BIGINT NOT NULL REFERENCES staged_batch (id),
    hour            TEXT NOT NULL,
    records         INTEGER NOT NULL,
    output_id       BIGINT REFERENCES compact_output (id),
    PRIMARY KEY (batch_id, hour)
);
CREATE INDEX staged_hour_pending ON staged_hour (hour)
    WHERE output_id IS NULL;
CREATE INDEX staged_hour_output ON staged_hour (output_id);

-- Messages that could not be read as log records, kept whole with why.
CREATE TABLE quarantined_message (
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    payload         BLOB NOT NULL,
    kafka_timestamp TEXT,
    quarantined_at  TEXT NOT NULL,
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);

-- Per minute and service: records by level, and latency percentiles from a
-- mergeable sketch (DDSketch, 1% relative accuracy) kept beside them so
-- later batches of the same minute merge into it.
CREATE TABLE log_metric (
    minute          TEXT NOT NULL,
    service         TEXT NOT NULL,
    total           BIGINT NOT NULL,
    trace_count     BIGINT NOT NULL,
    debug_count     BIGINT NOT NULL,
    info_count      BIGINT NOT NULL,
    warn_count      BIGINT NOT NULL,
    error_count     BIGINT NOT NULL,
    fatal_count     BIGINT NOT NULL,
    unknown_count   BIGINT NOT NULL,
    latency_count   BIGINT NOT NULL,
    latency_p50     REAL,
    latency_p95     REAL,
    latency_p99     REAL,
    latency_sketch  TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (minute, service)
);
CREATE INDEX log_metric_service ON log_metric (service, minute);
