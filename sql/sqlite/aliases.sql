-- Thread aliases: alternative, caller-chosen names of a thread (primary key: the alias).

-- name: save_thread_alias :value
-- Points :alias at the thread; an alias naming another thread is moved (its created_at
-- restarts), one already naming this thread keeps its created_at. 1 when the thread exists,
-- None (nothing written) when it does not.
INSERT INTO thread_aliases (alias, thread_id, created_at)
SELECT :alias, id, :created_at FROM threads WHERE id = :thread_id
ON CONFLICT (alias) DO UPDATE
   SET created_at = CASE WHEN thread_id = excluded.thread_id THEN created_at ELSE excluded.created_at END,
       thread_id = excluded.thread_id
RETURNING 1;

-- name: get_by_alias :value
-- The thread an alias names, as a document; None when the alias is unknown.
SELECT d.doc
  FROM thread_aliases AS a
  JOIN thread_docs AS d ON d.id = a.thread_id
 WHERE a.alias = :alias;

-- name: delete_thread_alias :rowcount
DELETE FROM thread_aliases WHERE alias = :alias;

-- name: get_thread_aliases :many
-- A thread's aliases in the order they were saved (alias breaks ties).
SELECT alias FROM thread_aliases WHERE thread_id = :thread_id ORDER BY created_at, alias;
