-- SQLite-only statements. SQLite has no data-modifying CTEs, so a save or an append is several
-- statements inside one BEGIN IMMEDIATE transaction (PostgreSQL: one statement each, see
-- sql/postgres/postgres.sql). Message parameters are JSON arrays of message documents.
-- Messages are found by primary key: the unary "+" in "+thread_id = :thread_id" is SQLite's way
-- to keep a term from choosing the index, so the (thread_id, sequence) index is not used to scan
-- the whole thread instead.

-- name: connect :script
-- Per connection: busy_timeout (first, so switching to WAL waits too) makes a second writer
-- wait for the lock instead of failing at once; WAL lets readers run beside the writer;
-- foreign keys are off unless asked for.
PRAGMA busy_timeout = 5000;
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;

-- name: begin :exec
-- Takes the write lock up front, so a transaction never has to upgrade a read lock (which can
-- fail with SQLITE_BUSY however long busy_timeout is).
BEGIN IMMEDIATE;

-- name: commit :exec
COMMIT;

-- name: rollback :exec
ROLLBACK;

-- name: save_thread :exec
-- Runs after the save's message statements: last_sequence is the highest sequence stored.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at,
        (SELECT coalesce(max(sequence), 0) FROM messages WHERE thread_id = :thread_id))
ON CONFLICT (id) DO UPDATE
   SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
       source = excluded.source, updated_at = excluded.updated_at,
       last_sequence = excluded.last_sequence;

-- name: upsert_messages :many
-- The save's new messages: those this thread does not hold yet are inserted, numbered on from
-- its highest sequence; those it holds are rewritten in place. Returns (id, sequence) of each;
-- a message missing from the result is stored in another thread (the caller rolls back).
-- The held rows' attempted sequences are negative so they never collide on (thread_id, sequence).
WITH incoming AS (
    SELECT e.key, e.value AS doc,
           EXISTS (SELECT 1 FROM messages AS m
                    WHERE m.id = e.value ->> '$.id' AND +m.thread_id = :thread_id) AS held
      FROM json_each(:messages) AS e
)
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
SELECT doc ->> '$.id', :thread_id,
       CASE WHEN held THEN -1 - key
            ELSE (SELECT coalesce(max(sequence), 0) FROM messages WHERE thread_id = :thread_id)
                 + row_number() OVER (PARTITION BY held ORDER BY key)
       END,
       doc ->> '$.turn', doc ->> '$.role', nullif(doc -> '$.content', 'null'),
       doc ->> '$.reasoning_content', doc ->> '$.name', doc ->> '$.tool_call_id',
       nullif(doc -> '$.tool_calls', 'null'), doc -> '$.attributes', doc ->> '$.timestamp',
       nullif(doc -> '$.source', 'null'), doc -> '$.platforms', doc -> '$.attachments',
       doc -> '$.metrics', doc -> '$.reactions'
  FROM incoming
 WHERE true
ON CONFLICT (id) DO UPDATE
   SET turn = excluded.turn, role = excluded.role, content = excluded.content,
       reasoning_content = excluded.reasoning_content, name = excluded.name,
       tool_call_id = excluded.tool_call_id, tool_calls = excluded.tool_calls,
       attributes = excluded.attributes, timestamp = excluded.timestamp, source = excluded.source,
       platforms = excluded.platforms, attachments = excluded.attachments,
       metrics = excluded.metrics, reactions = excluded.reactions
 WHERE messages.thread_id = excluded.thread_id
RETURNING id, sequence;

-- name: update_messages :rowcount
-- The save's edited messages: rewritten in place if this thread still holds them.
UPDATE messages
   SET turn = e.value ->> '$.turn', role = e.value ->> '$.role',
       content = nullif(e.value -> '$.content', 'null'),
       reasoning_content = e.value ->> '$.reasoning_content', name = e.value ->> '$.name',
       tool_call_id = e.value ->> '$.tool_call_id',
       tool_calls = nullif(e.value -> '$.tool_calls', 'null'),
       attributes = e.value -> '$.attributes', timestamp = e.value ->> '$.timestamp',
       source = nullif(e.value -> '$.source', 'null'), platforms = e.value -> '$.platforms',
       attachments = e.value -> '$.attachments', metrics = e.value -> '$.metrics',
       reactions = e.value -> '$.reactions'
  FROM json_each(:messages) AS e
 WHERE messages.id = e.value ->> '$.id' AND +messages.thread_id = :thread_id;

-- name: delete_messages :rowcount
-- :ids is a JSON array of message ids.
DELETE FROM messages WHERE id IN (SELECT value FROM json_each(:ids)) AND +thread_id = :thread_id;

-- name: renumber_negative :exec
-- Renumbering, step 1: SQLite checks UNIQUE (thread_id, sequence) row by row, so the new
-- numbers 1..n are first written negated, where they cannot collide with the old ones.
UPDATE messages
   SET sequence = -ordered.rank
  FROM (SELECT id, row_number() OVER (ORDER BY sequence) AS rank
          FROM messages
         WHERE thread_id = :thread_id) AS ordered
 WHERE messages.id = ordered.id;

-- name: renumber_positive :many
-- Renumbering, step 2; returns (id, sequence) of every message of the thread.
UPDATE messages SET sequence = -sequence
 WHERE thread_id = :thread_id AND sequence < 0
RETURNING id, sequence;

-- name: append_thread :one
-- Reserves :count sequences in an existing thread; no row when it does not exist. Returns the
-- thread's header document and the first sequence reserved.
UPDATE threads
   SET updated_at = :updated_at, last_sequence = last_sequence + :count
 WHERE id = :thread_id
RETURNING json_object('id', id, 'title', title, 'attributes', json(attributes),
                      'platforms', json(platforms), 'source', json(source),
                      'created_at', created_at, 'updated_at', updated_at,
                      'messages', json('[]')) AS thread,
          last_sequence - :count + 1 AS first_sequence;

-- name: append_messages :many
-- Inserts :messages numbered from :first_sequence; returns (id, sequence) of each.
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
SELECT e.value ->> '$.id', :thread_id, :first_sequence + e.key,
       e.value ->> '$.turn', e.value ->> '$.role', nullif(e.value -> '$.content', 'null'),
       e.value ->> '$.reasoning_content', e.value ->> '$.name', e.value ->> '$.tool_call_id',
       nullif(e.value -> '$.tool_calls', 'null'), e.value -> '$.attributes',
       e.value ->> '$.timestamp', nullif(e.value -> '$.source', 'null'), e.value -> '$.platforms',
       e.value -> '$.attachments', e.value -> '$.metrics', e.value -> '$.reactions'
  FROM json_each(:messages) AS e
 WHERE true
RETURNING id, sequence;

-- name: put_threads :many
-- Import and copy, step 1: stores the thread rows of :threads exactly as given unless their id
-- is taken; returns the ids stored. :threads is a JSON array of {id, title, attributes,
-- platforms, source, created_at, updated_at, last_sequence}. Messages and aliases come as
-- separate flat arrays: SQLite parses a JSON argument again for every row that reads it.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
SELECT e.value ->> '$.id', e.value ->> '$.title', e.value -> '$.attributes', e.value -> '$.platforms',
       nullif(e.value -> '$.source', 'null'), e.value ->> '$.created_at', e.value ->> '$.updated_at',
       e.value ->> '$.last_sequence'
  FROM json_each(:threads) AS e
 WHERE true
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: put_messages :exec
-- Step 2: the :messages (message documents, each with its thread_id and sequence) of the
-- threads :ids (a JSON array: those step 1 stored). A message id stored in another thread fails
-- on the primary key.
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
SELECT m.value ->> '$.id', m.value ->> '$.thread_id', m.value ->> '$.sequence', m.value ->> '$.turn',
       m.value ->> '$.role', nullif(m.value -> '$.content', 'null'),
       m.value ->> '$.reasoning_content', m.value ->> '$.name', m.value ->> '$.tool_call_id',
       nullif(m.value -> '$.tool_calls', 'null'), m.value -> '$.attributes',
       m.value ->> '$.timestamp', nullif(m.value -> '$.source', 'null'), m.value -> '$.platforms',
       m.value -> '$.attachments', m.value -> '$.metrics', m.value -> '$.reactions'
  FROM json_each(:messages) AS m
 WHERE m.value ->> '$.thread_id' IN (SELECT value FROM json_each(:ids));

-- name: put_aliases :exec
-- Step 3: the :aliases ({alias, thread_id, created_at}) of the threads :ids. An alias naming
-- another thread fails on the primary key.
INSERT INTO thread_aliases (alias, thread_id, created_at)
SELECT a.value ->> '$.alias', a.value ->> '$.thread_id', a.value ->> '$.created_at'
  FROM json_each(:aliases) AS a
 WHERE a.value ->> '$.thread_id' IN (SELECT value FROM json_each(:ids));

-- name: ping :value
-- One round trip through the connection's thread (ThreadStore.ping).
SELECT 1;
