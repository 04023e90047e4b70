-- Usage statistics, computed in the database in one call.

-- name: get_usage_stats :value
-- Counts, recent activity by updated_at (threads_updated_at_idx) and token sums per model read
-- from messages.metrics: only JSON numbers count, truncated toward zero (as
-- threadstore.matching.token_count); a model is a non-empty string, else the row's model is NULL.
-- Exact however large, as on memory and PostgreSQL: SQLite's sum() fails past 2^63 and CAST
-- clamps a value beyond it, so each model's row holds, per count, the sums of the high and the
-- low 32 bits of the 64-bit values (neither can overflow) and a JSON array of the values beyond
-- 64 bits as written; SQLiteBackend.usage adds them up in Python.
WITH counted AS (
    SELECT CASE WHEN json_type(metrics, '$.model') = 'text'
                THEN nullif(json_extract(metrics, '$.model'), '') END AS model,
           CASE WHEN json_type(metrics, '$.usage.prompt_tokens') IN ('integer', 'real')
                THEN json_extract(metrics, '$.usage.prompt_tokens') END AS prompt,
           CASE WHEN json_type(metrics, '$.usage.completion_tokens') IN ('integer', 'real')
                THEN json_extract(metrics, '$.usage.completion_tokens') END AS completion,
           CASE WHEN json_type(metrics, '$.usage.total_tokens') IN ('integer', 'real')
                THEN json_extract(metrics, '$.usage.total_tokens') END AS total,
           rowid
      FROM messages
     LIMIT -1  -- keeps it a subquery of its own (not flattened), so each value is read once
), split AS (
    -- A value is "wide" when it may not fit 64 bits: an integer SQLite reads as a real, a real
    -- of 2^63 or more in magnitude (and -2^63, whose magnitude does not fit); other reals are
    -- truncated by CAST.
    SELECT model, rowid,
           (prompt >= 9223372036854775807.0 OR prompt <= -9223372036854775808.0) AS prompt_wide,
           (completion >= 9223372036854775807.0 OR completion <= -9223372036854775808.0) AS completion_wide,
           (total >= 9223372036854775807.0 OR total <= -9223372036854775808.0) AS total_wide,
           CAST(prompt AS INTEGER) AS prompt, CAST(completion AS INTEGER) AS completion,
           CAST(total AS INTEGER) AS total
      FROM counted
)
SELECT json_object(
           'threads', (SELECT count(*) FROM threads),
           'messages', (SELECT count(*) FROM messages),
           'last_hour', (SELECT count(*) FROM threads WHERE updated_at >= :hour_ago),
           'last_day', (SELECT count(*) FROM threads WHERE updated_at >= :day_ago),
           'last_week', (SELECT count(*) FROM threads WHERE updated_at >= :week_ago),
           'models', (SELECT json_group_array(json_array(
                                 model, prompt_high, prompt_low, json(prompt_wide),
                                 completion_high, completion_low, json(completion_wide),
                                 total_high, total_low, json(total_wide)))
                        FROM (SELECT model,
                                     sum(prompt >> 32) FILTER (WHERE NOT prompt_wide) AS prompt_high,
                                     sum(prompt & 4294967295) FILTER (WHERE NOT prompt_wide) AS prompt_low,
                                     json_group_array(json((SELECT metrics -> '$.usage.prompt_tokens' FROM messages AS m WHERE m.rowid = split.rowid)))
                                         FILTER (WHERE prompt_wide) AS prompt_wide,
                                     sum(completion >> 32) FILTER (WHERE NOT completion_wide) AS completion_high,
                                     sum(completion & 4294967295) FILTER (WHERE NOT completion_wide) AS completion_low,
                                     json_group_array(json((SELECT metrics -> '$.usage.completion_tokens' FROM messages AS m WHERE m.rowid = split.rowid)))
                                         FILTER (WHERE completion_wide) AS completion_wide,
                                     sum(total >> 32) FILTER (WHERE NOT total_wide) AS total_high,
                                     sum(total & 4294967295) FILTER (WHERE NOT total_wide) AS total_low,
                                     json_group_array(json((SELECT metrics -> '$.usage.total_tokens' FROM messages AS m WHERE m.rowid = split.rowid)))
                                         FILTER (WHERE total_wide) AS total_wide
                                FROM split
                               GROUP BY 1)));
