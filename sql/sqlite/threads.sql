-- Thread reads and deletes. Reads return JSON documents (see the *_docs views).

-- name: get :value
-- One thread with its messages as a JSON document; None when absent. The backend reads
-- sqlite.thread_rows instead and builds the document itself (faster, see there); this and list
-- stay so both dialects name the same queries.
SELECT doc FROM thread_docs WHERE id = :thread_id;

-- name: list :value
-- A page of threads, newest updated_at first (id breaks ties), as one JSON array; a NULL
-- :limit means no limit. The backend reads sqlite.page_rows instead.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at FROM threads
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1), '[]');

-- name: create_if_absent :exec
-- Stores an empty thread unless one with that id exists.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at)
ON CONFLICT (id) DO NOTHING;

-- name: delete :rowcount
-- Messages and aliases go with it (ON DELETE CASCADE; foreign_keys is switched on at connect).
DELETE FROM threads WHERE id = :thread_id;

-- name: delete_many :rowcount
-- :ids is a JSON array of thread ids.
DELETE FROM threads WHERE id IN (SELECT value FROM json_each(:ids));
