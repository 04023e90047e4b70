-- Thread aliases: alternative, caller-chosen names of a thread (primary key: the alias).

-- name: save_thread_alias :value
-- Points :alias at the thread; an alias naming another thread is moved (its created_at
-- restarts), one already naming this thread keeps its created_at. True when the thread exists,
-- None (nothing written) when it does not.
-- The thread row is locked (FOR KEY SHARE, as the foreign key check would) before the alias
-- row: taken after it, a delete_many of both threads waited for the alias while holding the
-- thread the move waited for, a deadlock.
INSERT INTO thread_aliases (alias, thread_id, created_at)
SELECT :alias, id, :created_at::text::timestamptz FROM threads WHERE id = :thread_id FOR KEY SHARE
ON CONFLICT (alias) DO UPDATE
   SET created_at = CASE WHEN thread_aliases.thread_id = excluded.thread_id
                         THEN thread_aliases.created_at ELSE excluded.created_at END,
       thread_id = excluded.thread_id
RETURNING true;

-- name: get_by_alias :one
-- The thread an alias names, as threads.get gives it; no row when the alias is unknown.
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT thread_id AS id FROM thread_aliases WHERE alias = :alias) AS page;

-- name: delete_thread_alias :rowcount
DELETE FROM thread_aliases WHERE alias = :alias;

-- name: get_thread_aliases :many
-- A thread's aliases in the order they were saved (alias breaks ties).
SELECT alias FROM thread_aliases WHERE thread_id = :thread_id ORDER BY created_at, alias;
