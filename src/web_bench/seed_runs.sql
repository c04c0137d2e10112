-- The bench runs (rtmas bench web; parameters in src/web_bench.rs).
WITH s AS MATERIALIZED (
    SELECT ($3::text[])[1 + (g - 1) % cardinality($3::text[])] AS dag_id,
           ($4::bigint[])[1 + (g - 1) % cardinality($3::text[])] AS version_id,
           $5::timestamptz - make_interval(secs => $6::float8
               * (($2::bigint - g) / cardinality($3::text[]))) AS logical_date,
           ($2::bigint - g) < cardinality($3::text[]) AS newest,
           random() AS draw,
           random() * 3 AS jitter
    FROM generate_series($1::bigint, $2::bigint) AS g)
INSERT INTO dag_run (dag_id, run_id, run_type, state, version_id, logical_date,
    data_interval_start, data_interval_end, conf, queued_at, start_date, end_date)
SELECT dag_id,
       'scheduled__' || to_char(logical_date AT TIME ZONE 'UTC',
           'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       'scheduled',
       CASE WHEN newest THEN 'running' WHEN draw < $7 THEN 'failed' ELSE 'success' END,
       version_id, logical_date, logical_date,
       logical_date + make_interval(secs => $6),
       '{}',
       logical_date + make_interval(secs => $6 + jitter),
       logical_date + make_interval(secs => $6 + jitter + 1),
       CASE WHEN NOT newest THEN logical_date + make_interval(secs => $6 + jitter + 1 + $8) END
FROM s ORDER BY logical_date, dag_id
