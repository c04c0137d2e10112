-- The bench task instances (rtmas bench web; parameters in src/web_bench.rs).
WITH t AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[],
        $6::float8[]) AS t(dag_id, task_id, kind, layer, position, typical_ms)),
x AS MATERIALIZED (
    SELECT r.id AS run_pk, t.dag_id, t.task_id, t.kind, t.position,
           CASE r.state
             WHEN 'success' THEN 'success'
             WHEN 'failed' THEN CASE
               WHEN t.position = 1 + r.id % cardinality($7::int[]) THEN 'failed'
               WHEN t.layer > ($7::int[])[1 + r.id % cardinality($7::int[])]
                 THEN 'upstream_failed'
               ELSE 'success' END
             ELSE CASE
               WHEN t.layer < 1 + r.id % $12 THEN 'success'
               WHEN t.layer = 1 + r.id % $12 THEN 'running'
               ELSE 'none' END
           END AS state,
           r.start_date + make_interval(secs => $10 * (t.layer - 1) + random() * 5)
               AS queued_at,
           round(t.typical_ms * (0.5 + random()))::bigint AS duration_ms,
           1 + floor(random() * cardinality($8::text[]))::int AS w,
           random() AS draw
    FROM dag_run r JOIN t ON t.dag_id = r.dag_id),
y AS (
    SELECT *, state IN ('success', 'failed', 'running') AS started,
           queued_at + interval '200 milliseconds' AS start_date FROM x)
INSERT INTO task_instance (run_pk, dag_id, task_id, kind, state, try_number, max_tries,
    hostname, worker, queued_at, start_date, end_date, duration_ms, error)
SELECT run_pk, dag_id, task_id, kind, state,
       CASE WHEN state = 'failed' OR (state = 'success' AND draw < $11) THEN 2
            WHEN started THEN 1 ELSE 0 END,
       2,
       CASE WHEN started THEN ($9::text[])[w] END,
       CASE WHEN started THEN ($8::text[])[w] END,
       CASE WHEN started THEN queued_at END,
       CASE WHEN started THEN start_date END,
       CASE WHEN started AND state <> 'running'
            THEN start_date + duration_ms * interval '1 millisecond' END,
       CASE WHEN started AND state <> 'running' THEN duration_ms END,
       CASE WHEN state = 'failed' THEN 'command exited with status 1' END
FROM y ORDER BY run_pk, position
