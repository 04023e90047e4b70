-- Bounded reads and retention: message pages by sequence, thread summaries by keyset, deletes in
-- batches. Every read walks an index: messages' UNIQUE (thread_id, sequence) for pages and
-- summaries, threads_updated_at_idx (updated_at DESC, id DESC) for the order of threads.

-- name: get_messages_before :many
-- The thread's row, then its last :limit messages below sequence :before, as threads.get gives
-- them (the backend builds the document); no rows when the thread does not exist.
SELECT 1, NULL, id, title, attributes, platforms, source, created_at, updated_at,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM threads
 WHERE id = :thread_id
UNION ALL
SELECT * FROM (SELECT 1, sequence, id, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions
                 FROM messages
                WHERE thread_id = :thread_id AND sequence < :before
                ORDER BY sequence DESC
                LIMIT :limit)
 ORDER BY 2;

-- name: get_messages_after :many
-- As messages_before, with the first :limit messages above sequence :after (and below :before).
SELECT 1, NULL, id, title, attributes, platforms, source, created_at, updated_at,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM threads
 WHERE id = :thread_id
UNION ALL
SELECT * FROM (SELECT 1, sequence, id, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions
                 FROM messages
                WHERE thread_id = :thread_id AND sequence > :after AND sequence < :before
                ORDER BY sequence
                LIMIT :limit)
 ORDER BY 2;

-- name: list_threads :many
-- Up to :limit threads after the position (:after_time, :after_id) in the order updated_at DESC,
-- id DESC: each thread's columns, its message count and its last message's document, from which
-- the backend builds the summaries' JSON (0.75 ms for 50 against 1.37 ms for a JSON array built
-- here with json_group_array). The page is a range of threads_updated_at_idx; the count and the
-- last message come from the (thread_id, sequence) index.
SELECT t.id, t.title, t.attributes, t.platforms, t.source, t.created_at, t.updated_at,
       (SELECT count(*) FROM messages AS c WHERE c.thread_id = t.id),
       (SELECT d.doc FROM message_docs AS d WHERE d.thread_id = t.id ORDER BY d.sequence DESC LIMIT 1)
  FROM threads AS t
 WHERE (t.updated_at, t.id) < (:after_time, :after_id)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit;

-- name: list_threads_by_attributes :many
-- As summaries, only threads whose attributes hold every key of :wanted with an equal value.
-- SQLite has no index for JSON equality: the walk on threads_updated_at_idx tests each thread.
SELECT t.id, t.title, t.attributes, t.platforms, t.source, t.created_at, t.updated_at,
       (SELECT count(*) FROM messages AS c WHERE c.thread_id = t.id),
       (SELECT d.doc FROM message_docs AS d WHERE d.thread_id = t.id ORDER BY d.sequence DESC LIMIT 1)
  FROM threads AS t
 WHERE (t.updated_at, t.id) < (:after_time, :after_id)
   AND threadstore_has_all(t.attributes, :wanted)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit;

-- name: count_threads_to_delete :value
-- How many threads were last updated before :cutoff (and match :wanted, when not NULL).
SELECT count(*)
  FROM threads
 WHERE updated_at < :cutoff
   AND (:wanted IS NULL OR threadstore_has_all(attributes, :wanted));

-- name: delete_threads :rowcount
-- Deletes up to :batch of count_old's threads, oldest first, with their messages and aliases
-- (ON DELETE CASCADE). Run in its own BEGIN IMMEDIATE: no other writer runs meanwhile, so what
-- it reads is what it deletes.
DELETE FROM threads
 WHERE id IN (SELECT id
                FROM threads
               WHERE updated_at < :cutoff
                 AND (:wanted IS NULL OR threadstore_has_all(attributes, :wanted))
               ORDER BY updated_at, id
               LIMIT :batch);

-- name: thread_row :value
-- Whether the thread exists (true), else None. PostgreSQL's also locks its row; here the write
-- transaction (BEGIN IMMEDIATE) already keeps every other writer out.
SELECT true FROM threads WHERE id = :thread_id;

-- name: prune :rowcount
-- Deletes all but the :keep_last highest-sequenced messages of the thread; the rest keep their
-- sequences.
DELETE FROM messages
 WHERE thread_id = :thread_id
   AND sequence <= (SELECT sequence
                      FROM messages
                     WHERE thread_id = :thread_id
                     ORDER BY sequence DESC
                     LIMIT 1 OFFSET :keep_last);
