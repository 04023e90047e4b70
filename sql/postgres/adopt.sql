-- Adopting a slide-narrator (6.x) database in place (threadstore.adopt): one transaction that
-- locks narrator's threads and messages tables, moves them aside, creates migration 0001's
-- schema, copies every row across with set-based INSERT ... SELECT, drops narrator's tables and
-- applies the later migrations. The copies target version 1's columns: later migrations convert
-- from there. narrator's layout (narrator/database/models.py): varchar ids, jsonb columns, some
-- nullable (platforms, attachments, reactions, tool_calls, source) and holding the JSON null
-- where narrator saved None; timestamptz times; content as text; a sequence per message that
-- concurrent saves repeat. Two steps only PostgreSQL needs are postgres.adopt_lock and
-- postgres.adopt_rename_indexes (sql/postgres/postgres.sql).

-- name: counts :one
-- Threads, messages, and how many messages change sequence when each thread's messages are
-- numbered 1..n in stored order: sequence, then timestamp, then id (compared as bytes).
SELECT (SELECT count(*) FROM threads),
       (SELECT count(*) FROM messages),
       (SELECT count(*)
          FROM (SELECT sequence,
                       row_number() OVER (PARTITION BY thread_id
                                          ORDER BY sequence, timestamp, id COLLATE "C") AS n
                  FROM messages) AS numbered
         WHERE sequence IS DISTINCT FROM n);

-- name: problems :many
-- (thread_id, message_id or NULL, field, kind) for each value that does not convert as it is.
-- PostgreSQL already refused NUL characters and non-JSON numbers when narrator wrote them, and
-- its jsonb already changed the floats it changes, so only these remain: no_title, and time (a
-- NULL time).
SELECT id AS thread_id, NULL AS message_id, 'title' AS field, 'no_title' AS kind
  FROM threads WHERE title IS NULL
UNION ALL
SELECT id, NULL, 'created_at', 'time' FROM threads WHERE created_at IS NULL
UNION ALL
SELECT id, NULL, 'updated_at', 'time' FROM threads WHERE updated_at IS NULL
UNION ALL
SELECT thread_id, id, 'timestamp', 'time' FROM messages WHERE timestamp IS NULL
 ORDER BY 1, 2, 3, 4;

-- name: rename_threads :exec
ALTER TABLE threads RENAME TO narrator_threads;

-- name: rename_messages :exec
ALTER TABLE messages RENAME TO narrator_messages;

-- name: copy_threads :exec
-- Every thread, with its message count as last_sequence. A NULL title reads as narrator's
-- default, 'Untitled Thread'; a NULL time as the other one, else the epoch (listed by problems).
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
SELECT t.id, coalesce(t.title, 'Untitled Thread'),
       coalesce(nullif(t.attributes, 'null'), '{}'), coalesce(nullif(t.platforms, 'null'), '{}'), NULL,
       coalesce(t.created_at, t.updated_at, 'epoch'), coalesce(t.updated_at, t.created_at, 'epoch'),
       coalesce(c.messages, 0)
  FROM narrator_threads AS t
  LEFT JOIN (SELECT thread_id, count(*) AS messages FROM narrator_messages GROUP BY thread_id) AS c
         ON c.thread_id = t.id;

-- name: copy_messages :exec
-- Every message, numbered 1..n per thread in stored order. content becomes a JSON string; the
-- JSON null and NULL become the column's default (tool_calls and source: NULL); an attachment
-- without attributes gets {}.
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
SELECT m.id, m.thread_id,
       row_number() OVER (PARTITION BY m.thread_id ORDER BY m.sequence, m.timestamp, m.id COLLATE "C"),
       m.turn, m.role, to_jsonb(m.content), m.reasoning_content, m.name, m.tool_call_id,
       nullif(m.tool_calls, 'null'), coalesce(nullif(m.attributes, 'null'), '{}'),
       coalesce(m.timestamp, 'epoch'), nullif(m.source, 'null'),
       coalesce(nullif(m.platforms, 'null'), '{}'),
       CASE WHEN jsonb_typeof(m.attachments) = 'array'
            THEN (SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(a.doc -> 'attributes') = 'object'
                                                   OR jsonb_typeof(a.doc) <> 'object'
                                                 THEN a.doc
                                                 ELSE a.doc || '{"attributes": {}}' END
                                            ORDER BY a.position), '[]')
                    FROM jsonb_array_elements(m.attachments) WITH ORDINALITY AS a (doc, position))
            ELSE '[]' END,
       coalesce(nullif(m.metrics, 'null'), '{}'), coalesce(nullif(m.reactions, 'null'), '{}')
  FROM narrator_messages AS m;

-- name: drop_messages :exec
DROP TABLE narrator_messages;

-- name: drop_threads :exec
DROP TABLE narrator_threads;
