-- Thread reads and deletes. Reads return JSON documents (see the *_docs views).

-- name: get :value
-- One thread with its messages as a JSON document; None when absent.
SELECT doc FROM thread_docs WHERE id = :thread_id;

-- name: list :value
-- A page of threads, newest updated_at first (id breaks ties), as one JSON array.
-- A NULL :limit means no limit.
-- The page is chosen on the index first, so documents are built for its rows only. The generic
-- plan (plan_cache_mode) guesses a LIMIT parameter at 10% of the table: joined to thread_docs
-- it hashed every thread (92 ms at 100,000 threads); the LATERAL, kept apart by OFFSET 0, looks
-- each page row's document up by key.
SELECT coalesce(json_agg(d.doc ORDER BY page.updated_at DESC, page.id DESC), '[]'::json)
  FROM (SELECT id, updated_at
          FROM threads
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 CROSS JOIN LATERAL (SELECT doc FROM thread_docs WHERE thread_docs.id = page.id OFFSET 0) AS d;

-- name: create_if_absent :exec
-- Stores an empty thread unless one with that id exists.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at)
VALUES (:thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
        :created_at::text::timestamptz, :updated_at::text::timestamptz)
ON CONFLICT (id) DO NOTHING;

-- name: delete :rowcount
-- Messages and aliases go with it (ON DELETE CASCADE).
DELETE FROM threads WHERE id = :thread_id;

-- name: delete_many :rowcount
DELETE FROM threads WHERE id = any(:ids::text[]);
