-- Adopting a slide-narrator (6.x) database in place (threadstore.adopt): one transaction that
-- moves narrator's threads and messages tables aside, creates migration 0001's schema, copies
-- every row across with set-based INSERT ... SELECT, drops narrator's tables and applies the
-- later migrations. The copies target version 1's columns: later migrations convert from there.
-- narrator's layout (narrator/database/models.py): JSON columns as JSON text, some nullable
-- (platforms, attachments, reactions, tool_calls, source), written by json.dumps (so NaN and
-- Infinity may appear, and None as the text 'null'); times as naive 'YYYY-MM-DD HH:MM:SS.ffffff'
-- text in UTC; content as plain text; a sequence per message that concurrent saves repeat.

-- name: counts :one
-- Threads, messages (those of a stored thread), and how many of them change sequence when
-- each thread's messages are numbered 1..n in stored order: sequence, then timestamp, then id.
SELECT (SELECT count(*) FROM threads),
       (SELECT count(*) FROM messages WHERE thread_id IN (SELECT id FROM threads)),
       (SELECT count(*)
          FROM (SELECT sequence,
                       row_number() OVER (PARTITION BY thread_id ORDER BY sequence, timestamp, id) AS n
                  FROM messages
                 WHERE thread_id IN (SELECT id FROM threads))
         WHERE sequence IS NOT n);

-- name: problems :many
-- (thread_id, message_id or NULL, field, kind) for each value threadstore would refuse on save
-- or that does not convert as it is, in narrator's tables. Kinds: nul (a NUL character), float
-- (1e16 and above, or -0.0: jsonb would change it), not_json (NaN or Infinity, which JSON lacks),
-- no_title, time (NULL or not in narrator's format), orphan (a message whose thread is gone).
-- One scan of messages keeps only those whose text could hold a problem (json.dumps writes
-- floats of 1e16 and above as 1e+16, NUL as \u0000), and only those are looked at closely.
WITH suspects AS MATERIALIZED (
    SELECT * FROM messages
     WHERE instr(id, char(0)) OR instr(content, char(0)) OR instr(reasoning_content, char(0))
        OR instr(name, char(0)) OR instr(tool_call_id, char(0))
        OR instr(tool_calls, '\u0000') OR instr(tool_calls, 'e+') OR instr(tool_calls, '-0')
        OR instr(tool_calls, 'NaN') OR instr(tool_calls, 'Infinity')
        OR instr(attributes, '\u0000') OR instr(attributes, 'e+') OR instr(attributes, '-0')
        OR instr(attributes, 'NaN') OR instr(attributes, 'Infinity')
        OR instr(source, '\u0000') OR instr(source, 'e+') OR instr(source, '-0')
        OR instr(source, 'NaN') OR instr(source, 'Infinity')
        OR instr(platforms, '\u0000') OR instr(platforms, 'e+') OR instr(platforms, '-0')
        OR instr(platforms, 'NaN') OR instr(platforms, 'Infinity')
        OR instr(attachments, '\u0000') OR instr(attachments, 'e+') OR instr(attachments, '-0')
        OR instr(attachments, 'NaN') OR instr(attachments, 'Infinity')
        OR instr(metrics, '\u0000') OR instr(metrics, 'e+') OR instr(metrics, '-0')
        OR instr(metrics, 'NaN') OR instr(metrics, 'Infinity')
        OR instr(reactions, '\u0000') OR instr(reactions, 'e+') OR instr(reactions, '-0')
        OR instr(reactions, 'NaN') OR instr(reactions, 'Infinity')
        OR timestamp IS NULL
        OR timestamp NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'
        OR thread_id NOT IN (SELECT id FROM threads)
), json_values (thread_id, message_id, field, doc) AS (
    SELECT id, NULL, 'attributes', attributes FROM threads
    UNION ALL SELECT id, NULL, 'platforms', platforms FROM threads
    UNION ALL SELECT thread_id, id, 'tool_calls', tool_calls FROM suspects
    UNION ALL SELECT thread_id, id, 'attributes', attributes FROM suspects
    UNION ALL SELECT thread_id, id, 'source', source FROM suspects
    UNION ALL SELECT thread_id, id, 'platforms', platforms FROM suspects
    UNION ALL SELECT thread_id, id, 'attachments', attachments FROM suspects
    UNION ALL SELECT thread_id, id, 'metrics', metrics FROM suspects
    UNION ALL SELECT thread_id, id, 'reactions', reactions FROM suspects
), text_values (thread_id, message_id, field, value) AS (
    SELECT id, NULL, 'id', id FROM threads
    UNION ALL SELECT id, NULL, 'title', title FROM threads
    UNION ALL SELECT thread_id, id, 'id', id FROM suspects
    UNION ALL SELECT thread_id, id, 'content', content FROM suspects
    UNION ALL SELECT thread_id, id, 'reasoning_content', reasoning_content FROM suspects
    UNION ALL SELECT thread_id, id, 'name', name FROM suspects
    UNION ALL SELECT thread_id, id, 'tool_call_id', tool_call_id FROM suspects
), time_values (thread_id, message_id, field, value) AS (
    SELECT id, NULL, 'created_at', created_at FROM threads
    UNION ALL SELECT id, NULL, 'updated_at', updated_at FROM threads
    UNION ALL SELECT thread_id, id, 'timestamp', timestamp FROM suspects
)
SELECT thread_id, message_id, field, 'not_json' FROM json_values
 WHERE doc IS NOT NULL AND NOT json_valid(doc)
UNION
SELECT thread_id, message_id, field, 'nul' FROM json_values WHERE instr(doc, '\u0000') > 0
UNION
SELECT v.thread_id, v.message_id, v.field, 'float'
  FROM json_values AS v, json_tree(CASE WHEN json_valid(v.doc) THEN v.doc ELSE 'null' END) AS j
 WHERE (instr(v.doc, 'e+') > 0 OR instr(v.doc, '-0') > 0)
   AND j.type = 'real'
   AND (abs(j.atom) >= 1e16 OR (j.atom = 0 AND v.doc GLOB '*-0.0[^0-9e]*'))
UNION
SELECT thread_id, message_id, field, 'nul' FROM text_values WHERE instr(value, char(0)) > 0
UNION
SELECT id, NULL, 'title', 'no_title' FROM threads WHERE title IS NULL
UNION
SELECT thread_id, message_id, field, 'time' FROM time_values
 WHERE value IS NULL
    OR value NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'
UNION
SELECT thread_id, id, 'thread_id', 'orphan' FROM suspects WHERE thread_id NOT IN (SELECT id FROM threads)
 ORDER BY 1, 2, 3, 4;

-- name: rename_threads :exec
-- SQLite renames the primary-key index with the table, and messages' foreign key follows it.
ALTER TABLE threads RENAME TO narrator_threads;

-- name: rename_messages :exec
ALTER TABLE messages RENAME TO narrator_messages;

-- name: copy_messages :exec
-- Every message of a stored thread, numbered 1..n per thread in stored order. Times become
-- threadstore's ISO-8601 UTC text ('T', '+00:00'); others SQLite can parse are converted (with
-- millisecond precision), and a missing one reads as the epoch (both listed by problems).
-- content becomes a JSON string; JSON 'null' (json.dumps' None) and NULL become the column's
-- default (tool_calls and source: NULL); valid JSON is kept as written (one parse per value);
-- NaN and Infinity become null; an attachment without attributes gets {}.
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
SELECT id, thread_id,
       row_number() OVER (PARTITION BY thread_id ORDER BY sequence, narrator_time, id),
       turn, role, content, reasoning_content, name, tool_call_id, tool_calls, attributes,
       timestamp, source, platforms,
       coalesce((SELECT json_group_array(json(CASE WHEN json_type(a.value, '$.attributes') = 'object'
                                                   THEN a.value
                                                   ELSE json_set(a.value, '$.attributes', json('{}')) END))
                        OVER (ORDER BY a.key ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                   FROM json_each(attachments) AS a
                  LIMIT 1), '[]'),
       metrics, reactions
  FROM (SELECT m.id, m.thread_id, m.sequence, m.timestamp AS narrator_time, m.turn, m.role,
               CASE WHEN m.content IS NOT NULL THEN json_quote(CAST(m.content AS TEXT)) END AS content,
               m.reasoning_content, m.name, m.tool_call_id,
               CASE WHEN m.tool_calls IS NULL OR m.tool_calls = 'null' THEN NULL
                    WHEN json_valid(m.tool_calls) THEN m.tool_calls
                    ELSE json(replace(replace(replace(m.tool_calls, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS tool_calls,
               CASE WHEN m.attributes IS NULL OR m.attributes = 'null' THEN '{}'
                    WHEN json_valid(m.attributes) THEN m.attributes
                    ELSE json(replace(replace(replace(m.attributes, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS attributes,
               coalesce(CASE WHEN m.timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'
                             THEN substr(m.timestamp, 1, 10) || 'T' || substr(m.timestamp, 12) || '+00:00'
                             ELSE strftime('%Y-%m-%dT%H:%M:%f000+00:00', m.timestamp) END,
                        '1970-01-01T00:00:00.000000+00:00') AS timestamp,
               CASE WHEN m.source IS NULL OR m.source = 'null' THEN NULL
                    WHEN json_valid(m.source) THEN m.source
                    ELSE json(replace(replace(replace(m.source, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS source,
               CASE WHEN m.platforms IS NULL OR m.platforms = 'null' THEN '{}'
                    WHEN json_valid(m.platforms) THEN m.platforms
                    ELSE json(replace(replace(replace(m.platforms, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS platforms,
               CASE WHEN m.attachments IS NULL OR m.attachments = 'null' THEN '[]'
                    WHEN json_valid(m.attachments) THEN m.attachments
                    ELSE json(replace(replace(replace(m.attachments, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS attachments,
               CASE WHEN m.metrics IS NULL OR m.metrics = 'null' THEN '{}'
                    WHEN json_valid(m.metrics) THEN m.metrics
                    ELSE json(replace(replace(replace(m.metrics, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS metrics,
               CASE WHEN m.reactions IS NULL OR m.reactions = 'null' THEN '{}'
                    WHEN json_valid(m.reactions) THEN m.reactions
                    ELSE json(replace(replace(replace(m.reactions, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS reactions
          FROM narrator_messages AS m
         WHERE m.thread_id IN (SELECT id FROM narrator_threads));

-- name: copy_threads :exec
-- Every thread, after its messages (the foreign key is checked at COMMIT): last_sequence is its
-- message count, read through messages' (thread_id, sequence) index. A NULL title reads as
-- narrator's default, 'Untitled Thread'; a missing time as the other one, else the epoch.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
SELECT id, title, attributes, platforms, NULL,
       coalesce(created_at, updated_at, '1970-01-01T00:00:00.000000+00:00'),
       coalesce(updated_at, created_at, '1970-01-01T00:00:00.000000+00:00'),
       (SELECT count(*) FROM messages AS m WHERE m.thread_id = n.id)
  FROM (SELECT t.id, coalesce(t.title, 'Untitled Thread') AS title,
               CASE WHEN t.attributes IS NULL OR t.attributes = 'null' THEN '{}'
                    WHEN json_valid(t.attributes) THEN t.attributes
                    ELSE json(replace(replace(replace(t.attributes, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS attributes,
               CASE WHEN t.platforms IS NULL OR t.platforms = 'null' THEN '{}'
                    WHEN json_valid(t.platforms) THEN t.platforms
                    ELSE json(replace(replace(replace(t.platforms, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')) END AS platforms,
               CASE WHEN t.created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'
                    THEN substr(t.created_at, 1, 10) || 'T' || substr(t.created_at, 12) || '+00:00'
                    ELSE strftime('%Y-%m-%dT%H:%M:%f000+00:00', t.created_at) END AS created_at,
               CASE WHEN t.updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]'
                    THEN substr(t.updated_at, 1, 10) || 'T' || substr(t.updated_at, 12) || '+00:00'
                    ELSE strftime('%Y-%m-%dT%H:%M:%f000+00:00', t.updated_at) END AS updated_at
          FROM narrator_threads AS t) AS n;

-- name: drop_messages :exec
DROP TABLE narrator_messages;

-- name: drop_threads :exec
DROP TABLE narrator_threads;
