-- Usage statistics, computed in the database in one round trip.

-- name: get_usage_stats :value
-- Counts, recent activity by updated_at (threads_updated_at_idx) and token sums per model read
-- from messages.metrics: only JSON numbers count, truncated toward zero (as
-- threadstore.matching.token_count); a model is a non-empty string, else the row's model is NULL.
SELECT json_build_object(
           'threads', (SELECT count(*) FROM threads),
           'messages', (SELECT count(*) FROM messages),
           'last_hour', (SELECT count(*) FROM threads WHERE updated_at >= :hour_ago::text::timestamptz),
           'last_day', (SELECT count(*) FROM threads WHERE updated_at >= :day_ago::text::timestamptz),
           'last_week', (SELECT count(*) FROM threads WHERE updated_at >= :week_ago::text::timestamptz),
           'models', (SELECT coalesce(json_agg(json_build_array(model, prompt, completion, total)), '[]'::json)
                        FROM (SELECT CASE WHEN jsonb_typeof(metrics -> 'model') = 'string'
                                          THEN nullif(metrics ->> 'model', '') END AS model,
                                     sum(CASE WHEN jsonb_typeof(metrics #> '{usage,prompt_tokens}') = 'number'
                                              THEN trunc((metrics #>> '{usage,prompt_tokens}')::numeric) END) AS prompt,
                                     sum(CASE WHEN jsonb_typeof(metrics #> '{usage,completion_tokens}') = 'number'
                                              THEN trunc((metrics #>> '{usage,completion_tokens}')::numeric) END) AS completion,
                                     sum(CASE WHEN jsonb_typeof(metrics #> '{usage,total_tokens}') = 'number'
                                              THEN trunc((metrics #>> '{usage,total_tokens}')::numeric) END) AS total
                                FROM messages
                               GROUP BY 1) AS per_model));
