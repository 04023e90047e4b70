-- Usage statistics, computed in the database in one call.

-- name: get_usage_stats :value
-- Counts, recent activity by updated_at (threads_updated_at_idx) and token sums per model read
-- from messages.metrics: only JSON numbers count, truncated toward zero (as
-- threadstore.matching.token_count); a model is a non-empty string, else the row's model is NULL.
SELECT json_object(
           'threads', (SELECT count(*) FROM threads),
           'messages', (SELECT count(*) FROM messages),
           'last_hour', (SELECT count(*) FROM threads WHERE updated_at >= :hour_ago),
           'last_day', (SELECT count(*) FROM threads WHERE updated_at >= :day_ago),
           'last_week', (SELECT count(*) FROM threads WHERE updated_at >= :week_ago),
           'models', (SELECT json_group_array(json_array(model, prompt, completion, total))
                        FROM (SELECT CASE WHEN json_type(metrics, '$.model') = 'text'
                                          THEN nullif(json_extract(metrics, '$.model'), '') END AS model,
                                     sum(CASE WHEN json_type(metrics, '$.usage.prompt_tokens') IN ('integer', 'real')
                                              THEN CAST(json_extract(metrics, '$.usage.prompt_tokens') AS INTEGER) END) AS prompt,
                                     sum(CASE WHEN json_type(metrics, '$.usage.completion_tokens') IN ('integer', 'real')
                                              THEN CAST(json_extract(metrics, '$.usage.completion_tokens') AS INTEGER) END) AS completion,
                                     sum(CASE WHEN json_type(metrics, '$.usage.total_tokens') IN ('integer', 'real')
                                              THEN CAST(json_extract(metrics, '$.usage.total_tokens') AS INTEGER) END) AS total
                                FROM messages
                               GROUP BY 1)));
