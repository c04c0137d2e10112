-- The tries of the bench task instances (rtmas bench web).
INSERT INTO task_try (ti_id, try_number, state, hostname, worker, start_date, end_date,
    duration_ms, error)
SELECT ti.id, n,
       CASE WHEN n < ti.try_number THEN 'failed' ELSE ti.state END,
       ti.hostname, ti.worker,
       ti.start_date - (ti.try_number - n)
           * (make_interval(secs => $1) + COALESCE(ti.duration_ms, 0) * interval '1 millisecond'),
       ti.end_date - (ti.try_number - n)
           * (make_interval(secs => $1) + COALESCE(ti.duration_ms, 0) * interval '1 millisecond'),
       ti.duration_ms,
       CASE WHEN n < ti.try_number THEN 'command exited with status 1' ELSE ti.error END
FROM task_instance ti CROSS JOIN LATERAL generate_series(1, ti.try_number) AS n
WHERE ti.try_number > 0
ORDER BY ti.id, n
