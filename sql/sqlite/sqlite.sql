-- SQLite-only statements. SQLite has no data-modifying CTEs, so a save or an append is several
-- statements inside one BEGIN IMMEDIATE transaction (PostgreSQL: one statement each, see
-- sql/postgres/postgres.sql). Messages are written one row per message with executemany.
-- Messages are found by primary key, (thread_id, id).

-- name: connect :script
-- Per connection: busy_timeout (first, so switching to WAL waits too) makes a second writer
-- wait for the lock instead of failing at once; WAL lets readers run beside the writer;
-- foreign keys are off unless asked for.
PRAGMA busy_timeout = 5000;
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;

-- name: wait_when_busy :exec
-- busy_timeout alone, for the reads open() makes before sqlite.connect.
PRAGMA busy_timeout = 5000;

-- name: fail_when_busy :exec
-- For the background indexer's BEGIN: SQLITE_BUSY at once when another connection holds the write
-- lock, rather than waiting for it while holding the store's lock (reads would wait behind it);
-- the indexer tries again later. wait_when_busy restores the wait.
PRAGMA busy_timeout = 0;

-- name: connect_read_only :script
-- ThreadStore(read_only=True): the file is left byte-for-byte as it was. No switch to WAL (it
-- rewrites the header), and query_only refuses every write. Not mode=ro: a read-only
-- connection cannot remove the -wal and -shm files it creates beside a WAL database.
PRAGMA busy_timeout = 5000;
PRAGMA query_only = ON;
PRAGMA foreign_keys = ON;

-- name: begin :exec
-- Takes the write lock up front, so a transaction never has to upgrade a read lock (which can
-- fail with SQLITE_BUSY however long busy_timeout is).
BEGIN IMMEDIATE;

-- name: commit :exec
COMMIT;

-- name: rollback :exec
ROLLBACK;

-- name: save_thread_row :exec
-- Runs after the save's message statements: last_sequence becomes the highest sequence stored,
-- unless it was higher (removed messages' numbers are never handed out again).
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at,
        (SELECT coalesce(max(sequence), 0) FROM messages WHERE thread_id = :thread_id))
ON CONFLICT (id) DO UPDATE
   SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
       source = excluded.source, updated_at = excluded.updated_at,
       last_sequence = max(threads.last_sequence, excluded.last_sequence);

-- name: save_new_thread :exec
-- The light save of a thread this store has not seen (SQLiteBackend._save_light): its row, its
-- :count messages to be numbered 1..:count. An id already stored fails on the primary key.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at, :count);

-- name: save_appended_thread :value
-- The light save of messages appended to a loaded thread: updates its row and reserves :count
-- sequences; returns the highest sequence before them, or no row when the thread is gone.
UPDATE threads
   SET title = :title, attributes = :attributes, platforms = :platforms, source = :source,
       updated_at = :updated_at, last_sequence = last_sequence + :count
 WHERE id = :thread_id
RETURNING last_sequence - :count;

-- name: save_state :many
-- Before a save's new messages are written: (id, sequence) of each of :ids (a JSON array of
-- message ids) this thread already holds, then one row (NULL, the highest sequence handed out
-- in the thread: its last_sequence, or its highest message's, 0 for a new thread).
SELECT id, sequence FROM messages WHERE thread_id = :thread_id AND id IN (SELECT value FROM json_each(:ids))
UNION ALL
SELECT NULL, max(coalesce(max(sequence), 0),
                       coalesce((SELECT last_sequence FROM threads WHERE id = :thread_id), 0))
  FROM messages WHERE thread_id = :thread_id;

-- name: insert_message :exec
-- One message row, run with executemany (the backend binds each parameter by its name). JSON
-- columns are bound as the bytes of the message document (msgspec.Raw, no copy) and cast to
-- text here; a JSON null is stored as NULL. Binding columns instead of
-- reading them with ->> from a JSON argument: SQLite 3.40 copied the whole document for every
-- field read, so saving a 20 MB message raised peak memory by 656 MB; now by 62 MB (the
-- store's document, the copy sqlite3 binds, the record SQLite builds, its page cache).
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)
VALUES (:id, :thread_id, :sequence, :turn, :role, nullif(CAST(:content AS TEXT), 'null'),
        :reasoning_content, :name, :tool_call_id, nullif(CAST(:tool_calls AS TEXT), 'null'),
        CAST(:attributes AS TEXT), :timestamp, nullif(CAST(:source AS TEXT), 'null'),
        CAST(:platforms AS TEXT), CAST(:attachments AS TEXT), CAST(:metrics AS TEXT),
        CAST(:reactions AS TEXT));

-- name: update_message :exec
-- One stored message rewritten in place if this thread holds it (keeping its sequence), run
-- with executemany; values bound as for insert_message.
UPDATE messages
   SET turn = :turn, role = :role, content = nullif(CAST(:content AS TEXT), 'null'),
       reasoning_content = :reasoning_content, name = :name, tool_call_id = :tool_call_id,
       tool_calls = nullif(CAST(:tool_calls AS TEXT), 'null'), attributes = CAST(:attributes AS TEXT),
       timestamp = :timestamp, source = nullif(CAST(:source AS TEXT), 'null'),
       platforms = CAST(:platforms AS TEXT), attachments = CAST(:attachments AS TEXT),
       metrics = CAST(:metrics AS TEXT), reactions = CAST(:reactions AS TEXT)
 WHERE thread_id = :thread_id AND id = :id;

-- name: delete_messages :rowcount
-- :ids is a JSON array of message ids.
DELETE FROM messages WHERE thread_id = :thread_id AND id IN (SELECT value FROM json_each(:ids));

-- name: append_thread_row :one
-- Reserves :count sequences in an existing thread; no row when it does not exist. Returns the
-- first sequence reserved, then the thread's columns as threads.get has them.
UPDATE threads
   SET updated_at = :updated_at, last_sequence = last_sequence + :count
 WHERE id = :thread_id
RETURNING last_sequence - :count + 1, id, title, attributes, platforms, source, created_at,
          updated_at;

-- name: append_creating_thread_row :one
-- append_thread_row for append(create=True): stores the thread row when absent (then its
-- messages number from 1), else reserves :count sequences as append_thread_row does; one upsert,
-- so two first appends make one thread. Returns what append_thread_row returns.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at, :count)
ON CONFLICT (id) DO UPDATE
   SET updated_at = excluded.updated_at, last_sequence = last_sequence + excluded.last_sequence
RETURNING last_sequence - :count + 1, id, title, attributes, platforms, source, created_at,
          updated_at;

-- name: pop_message :value
-- Deletes the thread's highest-sequenced message and returns its document (the keys of
-- message_docs); no row when there is none. Runs inside BEGIN IMMEDIATE, before
-- pop_message_thread_row: SQLite has no data-modifying CTEs to do both in one statement.
DELETE FROM messages
 WHERE thread_id = :thread_id
   AND id = (SELECT id FROM messages WHERE thread_id = :thread_id ORDER BY sequence DESC LIMIT 1)
RETURNING json_object(
    'id', id, 'thread_id', thread_id, 'sequence', sequence, 'turn', turn, 'role', role,
    'content', json(content), 'reasoning_content', reasoning_content, 'name', name,
    'tool_call_id', tool_call_id, 'tool_calls', json(tool_calls),
    'attributes', json(attributes), 'timestamp', timestamp, 'source', json(source),
    'platforms', json(platforms), 'attachments', json(attachments),
    'metrics', json(metrics), 'reactions', json(reactions));

-- name: pop_message_thread_row :exec
-- After pop_message: the thread was updated now. Its last_sequence stays, so the popped
-- message's sequence is never handed out again.
UPDATE threads
   SET updated_at = :updated_at
 WHERE id = :thread_id;

-- name: import_threads :many
-- Import and copy, step 1: stores the thread rows of :threads exactly as given unless their id
-- is taken; returns the ids stored. :threads is a JSON array of {id, title, attributes,
-- platforms, source, created_at, updated_at, last_sequence}. Step 2 inserts the messages of
-- the threads stored (insert_message); aliases come as a separate flat array: SQLite parses a
-- JSON argument again for every row that reads it. Then their words and titles are indexed in
-- the same transaction (insert_words, insert_titles) and taken off the queues (dequeue_*_after).
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
SELECT e.value ->> '$.id', e.value ->> '$.title', e.value -> '$.attributes', e.value -> '$.platforms',
       nullif(e.value -> '$.source', 'null'), e.value ->> '$.created_at', e.value ->> '$.updated_at',
       e.value ->> '$.last_sequence'
  FROM json_each(:threads) AS e
 WHERE true
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: import_aliases :exec
-- Step 3: the :aliases ({alias, thread_id, created_at}) of the threads :ids. An alias naming
-- another thread fails on the primary key.
INSERT INTO thread_aliases (alias, thread_id, created_at)
SELECT a.value ->> '$.alias', a.value ->> '$.thread_id', a.value ->> '$.created_at'
  FROM json_each(:aliases) AS a
 WHERE a.value ->> '$.thread_id' IN (SELECT value FROM json_each(:ids));

-- name: ping :value
-- One round trip through the connection's thread (ThreadStore.ping).
SELECT 1;

-- name: queued_words :many
-- The next :batch queue entries, oldest first: (entry, thread id, message id, its content or NULL
-- when the message is gone or has none).
SELECT p.rowid, p.thread_id, p.message_id, m.content
  FROM message_words_pending AS p
  LEFT JOIN messages AS m ON m.thread_id = p.thread_id AND m.id = p.message_id
 ORDER BY p.rowid
 LIMIT :batch;

-- name: clear_words :exec
-- Forgets the words of the messages :ids (a JSON array of [thread id, message id]) lists.
DELETE FROM message_words
 WHERE (thread_id, message_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:ids));

-- name: insert_words :exec
-- Stores words and folded text: :rows is a JSON array of [thread id, message id, words, text or
-- null]; and the message's timestamp, made comparable (search.fulltext walks them newest first).
INSERT INTO message_words (thread_id, message_id, words, text, stamp)
SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3,
       substr(m.timestamp, 1, 19)
       || CASE WHEN length(m.timestamp) = 20 THEN '.000000' ELSE substr(m.timestamp, 20, 7) END
  FROM json_each(:rows) AS r
  LEFT JOIN messages AS m ON m.thread_id = r.value ->> 0 AND m.id = r.value ->> 1;

-- name: dequeue_words :exec
-- Drops the queue entries up to :last (taken in one transaction: nobody queued in between).
DELETE FROM message_words_pending WHERE rowid <= :last;

-- name: queue_ends :one
-- The last entries of message_words_pending and thread_titles_pending (0 when empty): an import
-- holding the write lock takes off the queues what it adds after them (dequeue_*_after).
SELECT (SELECT coalesce(max(rowid), 0) FROM message_words_pending),
       (SELECT coalesce(max(rowid), 0) FROM thread_titles_pending);

-- name: dequeue_words_after :exec
-- Drops the entries after :last (an import's, which it indexed itself).
DELETE FROM message_words_pending WHERE rowid > :last;

-- name: dequeue_titles_after :exec
-- Drops the title queue's entries after :last.
DELETE FROM thread_titles_pending WHERE rowid > :last;

-- name: queued_any :value
-- Whether anything waits in message_words_pending or thread_titles_pending.
SELECT EXISTS (SELECT 1 FROM message_words_pending) OR EXISTS (SELECT 1 FROM thread_titles_pending);

-- name: queued_titles :many
-- The next :batch entries of thread_titles_pending, oldest first: (entry, thread id, its title
-- or NULL when the thread is gone).
SELECT p.rowid, p.thread_id, t.title
  FROM thread_titles_pending AS p
  LEFT JOIN threads AS t ON t.id = p.thread_id
 ORDER BY p.rowid
 LIMIT :batch;

-- name: clear_titles :exec
-- Forgets the folded titles of the threads :ids (a JSON array).
DELETE FROM thread_titles WHERE thread_id IN (SELECT value FROM json_each(:ids));

-- name: insert_titles :exec
-- Stores folded titles: :rows is a JSON array of [thread id, folded title].
INSERT INTO thread_titles (thread_id, text) SELECT value ->> 0, value ->> 1 FROM json_each(:rows);

-- name: dequeue_titles :exec
-- Drops the title queue's entries up to :last.
DELETE FROM thread_titles_pending WHERE rowid <= :last;

-- name: by_title_indexed :value
-- search.by_title, testing only the threads whose folded title holds every literal of :trigrams (an
-- FTS5 query of phrases, SQLiteBackend) and those whose title is queued for the index.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE id IN (SELECT tt.thread_id
                                          FROM title_trigrams
                                          JOIN thread_titles AS tt ON tt.id = title_trigrams.rowid
                                         WHERE title_trigrams MATCH :trigrams
                                         UNION ALL
                                        SELECT thread_id FROM thread_titles_pending)
                             AND title REGEXP :pattern
                             AND (:wanted IS NULL OR threadstore_has_all(attributes, :wanted))
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: attribute_candidates :value
-- How many threads hold the attribute :key = :value (thread_attribute_values, migration 0009), up to
-- :cap: the backend reads those threads only when they are few, else it walks every thread.
SELECT count(*) FROM (SELECT 1 FROM thread_attribute_values WHERE key = :key AND value = :value LIMIT :cap);

-- name: by_attributes_indexed :value
-- search.by_attributes, testing only the threads that hold the attribute :key = :value, one of
-- :wanted's (attribute_candidates).
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE id IN (SELECT thread_id FROM thread_attribute_values
                                         WHERE key = :key AND value = :value)
                             AND threadstore_has_all(attributes, :wanted)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: list_threads_by_attributes_indexed :many
-- bounded.list_threads_by_attributes, testing only the threads that hold the attribute
-- :key = :value, one of :wanted's (attribute_candidates).
SELECT t.id, t.title, t.attributes, t.platforms, t.source, t.created_at, t.updated_at,
       (SELECT count(*) FROM messages AS c WHERE c.thread_id = t.id),
       (SELECT d.doc FROM message_docs AS d WHERE d.thread_id = t.id ORDER BY d.sequence DESC LIMIT 1)
  FROM threads AS t
 WHERE t.id IN (SELECT thread_id FROM thread_attribute_values WHERE key = :key AND value = :value)
   AND (t.updated_at, t.id) < (:after_time, :after_id)
   AND threadstore_has_all(t.attributes, :wanted)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit;

-- name: by_content_indexed :value
-- search.by_content, testing only the messages whose folded text holds every literal of :trigrams (an
-- FTS5 query of phrases, SQLiteBackend), those too long for the index and those queued for it.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE id IN (SELECT m.thread_id
                                          FROM (SELECT w.thread_id, w.message_id
                                                  FROM message_trigrams
                                                  JOIN message_words AS w
                                                    ON w.id = message_trigrams.rowid
                                                 WHERE message_trigrams MATCH :trigrams
                                                 UNION ALL
                                                SELECT thread_id, message_id FROM message_words
                                                 WHERE text IS NULL
                                                 UNION ALL
                                                SELECT thread_id, message_id
                                                  FROM message_words_pending) AS c
                                          JOIN messages AS m
                                            ON m.thread_id = c.thread_id AND m.id = c.message_id
                                         WHERE threadstore_content_text(m.content) REGEXP :pattern)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: adopt_read_only :exec
-- threadstore.adopt's dry run: no write can happen. Not a mode=ro connection: that cannot remove
-- the -wal and -shm files it creates beside a WAL database, so the file would not stay as it was.
PRAGMA query_only = ON;

-- name: begin_read :exec
-- One snapshot for several reads (the first read takes it): a search's queue and index, an
-- adoption's dry run.
BEGIN DEFERRED;
