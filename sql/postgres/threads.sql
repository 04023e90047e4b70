-- Thread reads and deletes. Reads return JSON: a thread's object and its messages' array.

-- name: get :one
-- One thread: its row as a JSON object and its messages as a JSON array (NULL without any), which
-- the backend joins into the document (nesting the array in json_build_object here took 10%
-- longer for 100 messages, 18% for 50); no row when absent. Every column goes (the decoder
-- ignores last_sequence), so neither column list is written out anywhere. Both parts name
-- :thread_id: Citus routes the statement to the thread's shard only then (correlated on t.id,
-- it read all 32 shards).
SELECT row_to_json(t),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = :thread_id)
  FROM threads AS t
 WHERE t.id = :thread_id;

-- name: list_recent :many
-- A page of threads, newest updated_at first (id breaks ties), as get has one thread: a row each.
-- A NULL :limit means no limit.
-- The page is chosen on the index first; each row's thread is looked up by primary key (a join
-- would let a generic plan, which guesses 10% of the table for an unknown LIMIT, hash the whole
-- threads table). Rows rather than one JSON array nesting the documents: 20% faster for 20
-- threads of 10 messages.
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM threads
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: create_if_absent :exec
-- Stores an empty thread unless one with that id exists.
WITH thread AS (
    INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at)
    VALUES (:thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
            :created_at::text::timestamptz, :updated_at::text::timestamptz)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
SELECT id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
       threadstore_platform_values(:platforms::jsonb)  -- get_or_create only: not a hot path
  FROM thread;

-- name: delete :rowcount
-- Messages and aliases go with it (ON DELETE CASCADE).
DELETE FROM threads WHERE id = :thread_id;

-- name: delete_many :rowcount
-- Locks the threads in id order, then deletes them: deleting them as a scan meets them (a bitmap
-- or sequential scan goes by place on disk, which updates change) could take two overlapping
-- deletes' locks in opposite orders. The messages and aliases go after every thread is locked.
WITH doomed AS (
    SELECT id FROM threads WHERE id = any(:ids::text[]) ORDER BY id FOR UPDATE
)
DELETE FROM threads WHERE id IN (SELECT id FROM doomed);
