-- PostgreSQL-only statements: a save and an append are each one statement (one round trip),
-- where SQLite runs several inside BEGIN IMMEDIATE (sql/sqlite/sqlite.sql).
-- Message parameters are JSON arrays of message documents (keys named like the columns),
-- expanded with jsonb_populate_record over the messages row type.

-- name: migration_lock :exec
-- Serialises migrations across processes until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('threadstore.migrate'));

-- name: create_schema :exec
-- Creates the schema= setting's schema when missing: the connections' search_path names it
-- alone, quoted (config.py checks the name). Looked up first, since CREATE SCHEMA IF NOT EXISTS
-- needs the CREATE privilege on the database even when the schema exists.
DO $$
DECLARE
    wanted text := (parse_ident(current_setting('search_path')))[1];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = wanted) THEN
        EXECUTE format('CREATE SCHEMA %I', wanted);
    END IF;
END
$$;

-- name: lock_thread :exec
-- Serialises saves of one thread until the transaction ends (the fallback when the one-statement
-- save raced another writer; see PostgresBackend.save). Works before the thread row exists.
-- The two-key form keeps these locks apart from migration_lock's one-key space.
SELECT pg_advisory_xact_lock(7424, hashtext(:thread_id));

-- name: save :many
-- Upserts the thread row and writes only the changed messages:
--   :new      messages this Thread object has not stored: inserted after the stored ones, or
--             updated when the thread already holds that id;
--   :edited   stored messages changed in place: updated (not resurrected if deleted meanwhile);
--   :removed  ids to delete;
--   :synced   the Thread was loaded from or saved to this store: the thread row is updated, not
--             recreated, and a last row (NULL, NULL) says it is gone.
-- The thread row's last_sequence hands out sequences. ON CONFLICT DO UPDATE locks the row and
-- reads its latest version, so concurrent savers of one thread get distinct, consecutive numbers
-- even though every CTE here reads one snapshot. A message of another thread with the same id
-- is another message (messages_pkey is (thread_id, id)).
-- Messages are found by primary key, (thread_id, id): every statement names :thread_id, so
-- Citus routes it to the thread's shard.
-- Locks: the thread row first (changed and removed read their ids through it: otherwise, with
-- nothing to insert, they may run before it), then this thread's messages. Every writer of
-- a thread's messages takes its row first (save_new, save_appended and append too), so two saves
-- cannot lock them in opposite orders. (New messages need no sort by id: their ids meet another
-- writer's only when stored in two threads, a ConflictError anyway.) Read through the thread
-- CTE, not gated by "AND (SELECT base FROM thread) IS NOT NULL": that one-time filter turned
-- changed into a hash join over the thread's messages, an edit 2.7-5.7x slower.
-- Returns (id, sequence) of the messages inserted or updated.
WITH incoming AS (
    SELECT e.ord, r.*
      FROM jsonb_array_elements(:new::jsonb) WITH ORDINALITY AS e(doc, ord)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
), fresh AS (
    -- Not in this thread. A correlated probe, one primary-key lookup per message: as a join,
    -- the generic plan hashed the whole messages table.
    SELECT i.*, row_number() OVER (ORDER BY i.ord) AS rank
      FROM incoming AS i
     WHERE NOT EXISTS (SELECT FROM messages AS m WHERE m.thread_id = :thread_id AND m.id = i.id)
), upserted AS (
    INSERT INTO threads AS t (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
    SELECT :thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
           :created_at::text::timestamptz, :updated_at::text::timestamptz, (SELECT count(*) FROM fresh)
     WHERE NOT :synced::boolean
    ON CONFLICT (id) DO UPDATE
       SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
           source = excluded.source, updated_at = excluded.updated_at,
           last_sequence = t.last_sequence + excluded.last_sequence
    RETURNING t.last_sequence - (SELECT count(*) FROM fresh) AS base
), updated AS (
    -- A Thread loaded from (or saved to) this store is saved into its stored row only: when the
    -- thread was deleted since, nothing is written (PostgresBackend.save says so).
    UPDATE threads
       SET title = :title, attributes = :attributes::jsonb, platforms = :platforms::jsonb,
           source = :source::jsonb, updated_at = :updated_at::text::timestamptz,
           last_sequence = last_sequence + (SELECT count(*) FROM fresh)
     WHERE id = :thread_id AND :synced::boolean
    RETURNING last_sequence - (SELECT count(*) FROM fresh) AS base
), thread AS (
    SELECT base FROM upserted UNION ALL SELECT base FROM updated
), searched AS (
    INSERT INTO thread_search AS s (thread_id, title, attributes, platforms, source, platform_values)
    SELECT :thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
           :platform_values::jsonb
      FROM thread
    ON CONFLICT (thread_id) DO UPDATE
       SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
           source = excluded.source, platform_values = excluded.platform_values
     WHERE (s.title, s.attributes, s.platforms, s.source)
           IS DISTINCT FROM (excluded.title, excluded.attributes, excluded.platforms, excluded.source)
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT f.id, :thread_id, thread.base + f.rank, f.turn, f.role, f.content, f.reasoning_content,
           f.name, f.tool_call_id, f.tool_calls, f.attributes, f.timestamp, f.source, f.platforms,
           f.attachments, f.metrics, f.reactions
      FROM fresh AS f CROSS JOIN thread
    RETURNING id, sequence
), changed AS (
    UPDATE messages AS m
       SET turn = r.turn, role = r.role, content = r.content,
           reasoning_content = r.reasoning_content, name = r.name, tool_call_id = r.tool_call_id,
           tool_calls = r.tool_calls, attributes = r.attributes, timestamp = r.timestamp,
           source = r.source, platforms = r.platforms, attachments = r.attachments,
           metrics = r.metrics, reactions = r.reactions
      FROM (SELECT value FROM jsonb_array_elements((SELECT :new::jsonb FROM thread))
            UNION ALL
            SELECT value FROM jsonb_array_elements((SELECT :edited::jsonb FROM thread))) AS e(doc)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
     WHERE m.thread_id = :thread_id AND m.id = r.id
    RETURNING m.id, m.sequence
), removed AS (
    DELETE FROM messages
     WHERE thread_id = :thread_id AND id = any((SELECT :removed::text[] FROM thread)::text[])
), queued AS (
    INSERT INTO message_text_pending (thread_id, message_id)
    SELECT :thread_id, id FROM inserted UNION ALL SELECT :thread_id, id FROM changed
)
SELECT id, sequence FROM inserted
UNION ALL
SELECT id, sequence FROM changed
UNION ALL
SELECT NULL, NULL WHERE NOT EXISTS (SELECT FROM thread);  -- the thread is gone: nothing written

-- name: save_new :many
-- A thread this store has not seen (not loaded from it nor saved to it), as a save writes it:
-- the thread row and its messages numbered 1..:count, without save's searches for stored ones
-- (server time for 10 messages 3.3 -> 1.9 ms, as the raw floor's; the save 6-16% faster end to
-- end). The thread id or a message id being stored already fails the statement on a primary key:
-- PostgresBackend.save then runs save.
WITH thread AS (
    INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
    VALUES (:thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
            :created_at::text::timestamptz, :updated_at::text::timestamptz, :count)
    RETURNING 0 AS base
), searched AS (
    INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
    SELECT :thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
           :platform_values::jsonb
      FROM thread
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT r.id, :thread_id, t.base + e.ord, r.turn, r.role, r.content,
           r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
           r.source, r.platforms, r.attachments, r.metrics, r.reactions
      FROM thread AS t
     CROSS JOIN jsonb_array_elements(:new::jsonb) WITH ORDINALITY AS e(doc, ord)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
    RETURNING thread_id, id, sequence
), queued AS (
    INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted
)
SELECT id, sequence FROM inserted;

-- name: save_appended :many
-- The common save, a stored thread whose only change is messages added after the stored ones:
-- updates the thread row and inserts the messages numbered on from last_sequence, as append
-- does, without save's searches for held and edited messages (server time 1.03 -> 0.68 ms, a
-- save of one new message 8-11% faster). No row when the thread is not stored; a message id
-- already stored fails the statement on messages_pkey. Either way PostgresBackend.save then
-- runs save.
WITH thread AS (
    UPDATE threads
       SET title = :title, attributes = :attributes::jsonb, platforms = :platforms::jsonb,
           source = :source::jsonb, updated_at = :updated_at::text::timestamptz,
           last_sequence = last_sequence + :count
     WHERE id = :thread_id
    RETURNING last_sequence - :count AS base
), searched AS (
    -- Writes (and re-indexes) the search copy only when a searched field changed; on conflict
    -- the latest version is compared, so concurrent saves leave it equal to the thread row.
    INSERT INTO thread_search AS s (thread_id, title, attributes, platforms, source, platform_values)
    SELECT :thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
           :platform_values::jsonb
      FROM thread
    ON CONFLICT (thread_id) DO UPDATE
       SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
           source = excluded.source, platform_values = excluded.platform_values
     WHERE (s.title, s.attributes, s.platforms, s.source)
           IS DISTINCT FROM (excluded.title, excluded.attributes, excluded.platforms, excluded.source)
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT r.id, :thread_id, t.base + e.ord, r.turn, r.role, r.content,
           r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
           r.source, r.platforms, r.attachments, r.metrics, r.reactions
      FROM thread AS t
     CROSS JOIN jsonb_array_elements(:new::jsonb) WITH ORDINALITY AS e(doc, ord)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
    RETURNING thread_id, id, sequence
), queued AS (
    INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted
)
SELECT id, sequence FROM inserted;

-- name: append :one
-- Inserts :messages after the stored ones of an existing thread without reading it; no row
-- when the thread does not exist. Returns the thread's header document and a JSON object
-- mapping each new message id to its sequence.
WITH thread AS (
    UPDATE threads
       SET updated_at = :updated_at, last_sequence = last_sequence + :count
     WHERE id = :thread_id
    RETURNING id, title, attributes, platforms, source, created_at, updated_at, last_sequence
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT r.id, t.id, t.last_sequence - :count + e.ord, r.turn, r.role, r.content,
           r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
           r.source, r.platforms, r.attachments, r.metrics, r.reactions
      FROM thread AS t
     CROSS JOIN jsonb_array_elements(:messages::jsonb) WITH ORDINALITY AS e(doc, ord)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
    RETURNING thread_id, id, sequence
), queued AS (
    INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted
)
SELECT json_build_object(
           'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
           'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
           'messages', '[]'::json) AS thread,
       (SELECT coalesce(json_object_agg(i.id, i.sequence), '{}'::json) FROM inserted AS i) AS sequences
  FROM thread AS t;

-- name: append_creating :one
-- append for append(create=True): the thread row is inserted when absent (its messages then
-- number from 1, and its search copy is written), else updated as append does. One upsert: two
-- first appends at once both succeed and make one thread (the second waits for the first's row
-- and updates it). xmax = 0 tells the row this statement inserted from the one it updated.
WITH thread AS (
    INSERT INTO threads AS t (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
    VALUES (:thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
            :created_at::text::timestamptz, :updated_at::text::timestamptz, :count)
    ON CONFLICT (id) DO UPDATE
       SET updated_at = excluded.updated_at, last_sequence = t.last_sequence + excluded.last_sequence
    RETURNING t.id, t.title, t.attributes, t.platforms, t.source, t.created_at, t.updated_at,
              t.last_sequence, t.xmax = 0 AS created
), searched AS (
    INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
    SELECT id, title, attributes, platforms, source, :platform_values::jsonb
      FROM thread
     WHERE created
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT r.id, t.id, t.last_sequence - :count + e.ord, r.turn, r.role, r.content,
           r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
           r.source, r.platforms, r.attachments, r.metrics, r.reactions
      FROM thread AS t
     CROSS JOIN jsonb_array_elements(:messages::jsonb) WITH ORDINALITY AS e(doc, ord)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
    RETURNING thread_id, id, sequence
), queued AS (
    INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted
)
SELECT json_build_object(
           'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
           'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
           'messages', '[]'::json) AS thread,
       (SELECT coalesce(json_object_agg(i.id, i.sequence), '{}'::json) FROM inserted AS i) AS sequences
  FROM thread AS t;

-- name: pop_message :one
-- Deletes the thread's highest-sequenced message and returns its document, in one statement.
-- Every writer of a thread's messages updates its row (saves, appends, pops, renumbering), so
-- the row's version (xmin) tells whether this statement's snapshot still holds the thread's
-- latest messages: `seen` is the version in the snapshot, `locked` the latest, which FOR UPDATE
-- waits for (a writer under way) and re-reads. When they differ, another writer committed after
-- the snapshot was taken (a concurrent pop took the message seen as newest, or an append added
-- a newer one): nothing is deleted, current is false, and PostgresBackend.pop_message runs the
-- statement again holding the row (bounded.thread_row), where the snapshot is the latest.
-- Returns present (the thread exists), current, and the message removed (NULL when none).
-- The thread's updated_at becomes :updated_at; its last_sequence stays, so the popped message's
-- sequence is never handed out again (a page cursor held on it stays right).
WITH seen AS (
    SELECT xmin AS version FROM threads WHERE id = :thread_id
), locked AS (
    SELECT xmin AS version FROM threads WHERE id = :thread_id FOR UPDATE
), newest AS (
    SELECT id, sequence FROM messages WHERE thread_id = :thread_id ORDER BY sequence DESC LIMIT 1
), removed AS (
    DELETE FROM messages AS m
     USING newest AS n
     WHERE m.thread_id = :thread_id AND m.id = n.id
       AND (SELECT version FROM seen) = (SELECT version FROM locked)
    RETURNING m.*
), counter AS (
    UPDATE threads
       SET updated_at = :updated_at::text::timestamptz
     WHERE id = (SELECT thread_id FROM removed)
)
SELECT EXISTS (SELECT FROM locked) AS present,
       (SELECT version FROM seen) IS NOT DISTINCT FROM (SELECT version FROM locked) AS current,
       (SELECT row_to_json(r) FROM removed AS r) AS message;

-- name: import_threads :one
-- Import and copy: stores threads exactly as given unless their id is taken -- times, messages
-- with their sequences, aliases with their times. :threads is a JSON array of {id, title,
-- attributes, platforms, source, platform_values, created_at, updated_at, last_sequence,
-- messages: [message documents], aliases: [{alias, created_at}]}. Returns the ids stored, and
-- the messages stored as postgres.take_queued returns the queued ones, which the import then
-- indexes in its transaction (postgres.store_text) instead of queueing them. An alias naming
-- another thread fails the whole statement (thread_aliases_pkey).
-- Rows are written in key order, whatever the order given: an insert holds its new key until
-- commit, and one that meets another writer's uncommitted key waits for it, so two imports of
-- the same threads in opposite orders each held what the other waited for (5-8 of 10 runs of
-- tests/reliability/test_transfer_deadlock.py deadlocked). In one order, the writer waiting holds
-- only smaller ids than the one it waits for, which cannot close a cycle. Messages and aliases
-- are written only for the threads this statement inserted (after all of them), so no other
-- writer touches them unless an id of theirs is taken, which fails anyway.
WITH incoming AS (
    SELECT e.doc FROM jsonb_array_elements(:threads::jsonb) AS e(doc)
), thread AS (
    INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
    SELECT i.doc ->> 'id', i.doc ->> 'title', i.doc -> 'attributes', i.doc -> 'platforms',
           nullif(i.doc -> 'source', 'null'::jsonb), (i.doc ->> 'created_at')::timestamptz,
           (i.doc ->> 'updated_at')::timestamptz, (i.doc ->> 'last_sequence')::integer
      FROM incoming AS i
     ORDER BY i.doc ->> 'id' COLLATE "C"
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), fresh AS (
    SELECT t.id, i.doc FROM incoming AS i JOIN thread AS t ON t.id = i.doc ->> 'id'
), searched AS (
    INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
    SELECT f.id, f.doc ->> 'title', f.doc -> 'attributes', f.doc -> 'platforms',
           nullif(f.doc -> 'source', 'null'::jsonb), f.doc -> 'platform_values'
      FROM fresh AS f
     ORDER BY f.id COLLATE "C"
), inserted AS (
    INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                          tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                          attachments, metrics, reactions)
    SELECT r.id, f.id, r.sequence, r.turn, r.role, r.content, r.reasoning_content, r.name,
           r.tool_call_id, r.tool_calls, r.attributes, r.timestamp, r.source, r.platforms,
           r.attachments, r.metrics, r.reactions
      FROM fresh AS f
     CROSS JOIN jsonb_array_elements(f.doc -> 'messages') AS e(doc)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
     ORDER BY f.id COLLATE "C", r.id COLLATE "C"
    RETURNING thread_id, id, left(threadstore_content_text(content), :max_chars) AS text
), aliased AS (
    INSERT INTO thread_aliases (alias, thread_id, created_at)
    SELECT a.alias, f.id, a.created_at
      FROM fresh AS f
     CROSS JOIN jsonb_to_recordset(f.doc -> 'aliases') AS a(alias text, created_at timestamptz)
     ORDER BY a.alias COLLATE "C"
)
SELECT ARRAY(SELECT id FROM thread) AS ids,
       (SELECT coalesce(json_agg(json_build_array(i.thread_id, i.id, i.text)), '[]'::json) FROM inserted AS i)
           AS messages;

-- name: lock_indexer :exec
-- Serialises postgres.index_text across processes until the transaction ends. Taken in a
-- statement of its own, so that index_text's snapshot includes what the previous indexer
-- committed: an indexer reading older content than the one before it wrote would leave stale
-- text behind with nothing queued to correct it.
SELECT pg_advisory_xact_lock(7425, 0);

-- name: take_queued :one
-- Takes up to :batch ids off message_text_pending and returns how many entries it took, and as a
-- JSON array of [thread id, message id, the first :max_chars characters of its content text] the messages still
-- stored, which threadstore.fulltext then cuts into words for postgres.store_text. Locks the
-- messages before any message_text row, in the order a delete takes them (messages, then
-- message_text through ON DELETE CASCADE): without it, a delete meeting the indexer deadlocked.
-- The messages are locked in key order, as an index scan meets them (a delete by another plan
-- can still meet them in another order: the server aborts one side, and the delete is retried).
-- A message deleted meanwhile drops out here.
WITH queued AS (
    DELETE FROM message_text_pending
     WHERE ctid = any(ARRAY(SELECT ctid FROM message_text_pending LIMIT :batch))
    RETURNING thread_id, message_id
), current AS (
    SELECT m.thread_id, m.id, left(threadstore_content_text(m.content), :max_chars) AS text
      FROM messages AS m
     WHERE (m.thread_id, m.id) IN (SELECT thread_id, message_id FROM queued)
     ORDER BY m.thread_id, m.id
       FOR KEY SHARE OF m
)
SELECT (SELECT count(*) FROM queued) AS taken,
       (SELECT coalesce(json_agg(json_build_array(c.thread_id, c.id, c.text)), '[]'::json) FROM current AS c)
           AS messages;

-- name: store_text :exec
-- Sets the message_text rows of the messages (:thread_ids[i], :ids[i]) to their messages' current content text and to :words
-- (tsvector text, threadstore.fulltext.tsvector, or NULL), deleting the rows of messages without
-- text. An edit committed since postgres.take_queued read the text queued its message again, so
-- the next batch sets its words too (searches index what is queued before they read).
WITH incoming AS (
    SELECT i.id, i.words::tsvector AS words, m.thread_id, threadstore_content_text(m.content) AS text,
           m.timestamp
      FROM unnest(:thread_ids::text[], :ids::text[], :words::text[]) AS i(thread_id, id, words)
      JOIN messages AS m ON m.thread_id = i.thread_id AND m.id = i.id
), stored AS (
    INSERT INTO message_text AS x (message_id, thread_id, text, words, stamp)
    SELECT id, thread_id, text, words, timestamp FROM incoming WHERE text IS NOT NULL
    ON CONFLICT (thread_id, message_id) DO UPDATE
       SET text = excluded.text, words = excluded.words, stamp = excluded.stamp
     WHERE (x.text, x.words, x.stamp) IS DISTINCT FROM (excluded.text, excluded.words, excluded.stamp)
)
DELETE FROM message_text
 WHERE (thread_id, message_id) IN (SELECT thread_id, id FROM incoming WHERE text IS NULL);

-- name: ping :value
-- One round trip (ThreadStore.ping).
SELECT 1;

-- name: session_state :one
-- The liveness check (PostgresBackend._check), run on a connection of its own: whether the
-- session with backend pid :pid still exists and what it is doing. present is false when the
-- server has ended it; state is NULL for a session this role may not see. probe_pid differs from
-- the pid asyncpg reports for the checking connection behind a pooler such as PgBouncer, whose
-- pids say nothing about server sessions.
SELECT pg_backend_pid() AS probe_pid, a.pid IS NOT NULL AS present, a.state, a.state_change
  FROM (SELECT 1) AS one
  LEFT JOIN pg_stat_activity AS a ON a.pid = :pid;

-- name: adopt_lock :exec
-- threadstore.adopt: narrator's writers (and readers) wait until the adoption commits or rolls
-- back.
LOCK TABLE threads, messages IN ACCESS EXCLUSIVE MODE;

-- name: adopt_rename_indexes :exec
-- threadstore.adopt, after adopt.rename_*: index names share the namespace of tables, so
-- narrator's (threads_pkey, messages_pkey, and any added since) move aside too before migration
-- 0001 creates its own. The names come from the catalog, quoted with %I; none from a caller.
DO $$
DECLARE
    index_name name;
BEGIN
    FOR index_name IN
        SELECT i.relname
          FROM pg_index AS x
          JOIN pg_class AS i ON i.oid = x.indexrelid
         WHERE x.indrelid IN ('narrator_threads'::regclass, 'narrator_messages'::regclass)
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', index_name, left('narrator_' || index_name, 63));
    END LOOP;
END
$$;

-- name: write_position :value
-- The WAL position after a write, as a number: a read replica that has replayed this far holds
-- the write (read-your-writes; asked only when the store has replicas).
SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint;

-- name: replica_state :one
-- A read replica's replay position and how many seconds it is behind its primary in applying:
-- 0 when it has applied all it received from a running WAL receiver (with an idle primary the
-- time since the last replayed transaction only grows, and means nothing), else the time since
-- the last transaction it replayed. A promoted standby (not in recovery) is current.
SELECT
    pg_is_in_recovery() AS standby,
    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END
        - '0/0'::pg_lsn)::bigint AS replayed,
    CASE
        WHEN NOT pg_is_in_recovery() THEN 0.0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
            AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0.0
        ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 0.0)
    END AS lag;

-- name: citus_installed :value
-- Whether this database has the Citus extension (a store created with distributed=True needs a
-- Citus coordinator; docs/citus.md).
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');

-- name: citus_distribute :exec
-- distributed=True, after the migrations (and `threadstore distribute`): the tables become
-- Citus distributed tables, sharded by thread and co-located, so each thread's rows live on one
-- worker and a statement naming its thread_id runs there alone. Citus moves the rows of tables
-- that hold some. thread_aliases is keyed by alias (an alias names one thread whatever the
-- thread), so it is sharded by alias on its own, without the foreign key Citus refuses between
-- tables sharded differently; deleting a thread deletes its aliases itself (threads.delete).
-- The functions the statements call are created on the workers too. Does nothing when done.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'threads'::regclass) THEN
        ALTER TABLE thread_aliases DROP CONSTRAINT IF EXISTS thread_aliases_thread_id_fkey;
        PERFORM create_distributed_function('threadstore_content_text(jsonb)');
        PERFORM create_distributed_function('threadstore_platform_values(jsonb)');
        PERFORM create_distributed_function('threadstore_nested(text[], jsonb)');
        PERFORM create_distributed_table('threads', 'id');
        PERFORM create_distributed_table('messages', 'thread_id', colocate_with => 'threads');
        PERFORM create_distributed_table('thread_search', 'thread_id', colocate_with => 'threads');
        PERFORM create_distributed_table('message_text', 'thread_id', colocate_with => 'threads');
        PERFORM create_distributed_table('message_text_pending', 'thread_id', colocate_with => 'threads');
        PERFORM create_distributed_table('thread_aliases', 'alias', colocate_with => 'none');
    END IF;
END
$$;

-- name: citus_functions :exec
-- distributed=True, after citus_distribute, at every open (so a store distributed by an older
-- version gets them too): the functions that run a thread's writes on its worker in one phase.
-- Distributed by their thread id and co-located with threads, a call is sent whole to the
-- thread's worker, whose statements then all run on its local shards: one round trip from the
-- coordinator and no two-phase commit. Their statements are single steps (not modifying CTEs,
-- which Citus would run as steps through the coordinator even there: an append in a function
-- of postgres.append's CTEs took 9-12 ms, of single statements 3.3-4.9 ms, the bare statement
-- 37-39 ms with two PREPARE TRANSACTIONs, on a loaded 2-core machine). Each locks the thread row
-- first, as every writer of a thread's messages does, so each statement after it sees every
-- write of the thread committed before: none needs the plain statements' retries under a lock.
-- Created in the store's schema (the connection's search_path names it alone), each keeps that
-- search_path (SET search_path FROM CURRENT): the worker runs a call under its own search_path,
-- where the store's tables of a schema= store are not found.
DO $$
BEGIN
    -- The four-argument append of earlier versions: a call of the one below would be ambiguous.
    DROP FUNCTION IF EXISTS threadstore_append(text, timestamptz, integer, jsonb);

    -- postgres.append, or postgres.append_creating when p_create (p_title..p_created_at the
    -- thread stored when absent): the thread's header and each new message's sequence; no row
    -- when the thread does not exist and p_create is false.
    CREATE OR REPLACE FUNCTION threadstore_append(
        p_thread_id text, p_updated_at text, p_count integer, p_messages jsonb, p_create boolean,
        p_title text, p_attributes jsonb, p_platforms jsonb, p_source jsonb, p_platform_values jsonb,
        p_created_at text
    ) RETURNS TABLE (thread json, sequences json) LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
    DECLARE
        t threads;
        created boolean := false;
    BEGIN
        IF p_create THEN
            INSERT INTO threads AS s (id, title, attributes, platforms, source, created_at, updated_at,
                                      last_sequence)
            VALUES (p_thread_id, p_title, p_attributes, p_platforms, p_source, p_created_at::timestamptz,
                    p_updated_at::timestamptz,
                    p_count)
            ON CONFLICT (id) DO UPDATE
               SET updated_at = excluded.updated_at, last_sequence = s.last_sequence + excluded.last_sequence
            RETURNING s.xmax = 0 INTO created;
            SELECT * INTO t FROM threads WHERE id = p_thread_id;
        ELSE
            UPDATE threads SET updated_at = p_updated_at::timestamptz, last_sequence = last_sequence + p_count
             WHERE id = p_thread_id
            RETURNING * INTO t;
            IF NOT FOUND THEN
                RETURN;
            END IF;
        END IF;
        IF created THEN
            INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
            VALUES (p_thread_id, p_title, p_attributes, p_platforms, p_source, p_platform_values);
        END IF;
        INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                              tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                              attachments, metrics, reactions)
        SELECT r.id, p_thread_id, t.last_sequence - p_count + e.ord, r.turn, r.role, r.content,
               r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
               r.source, r.platforms, r.attachments, r.metrics, r.reactions
          FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS e(doc, ord)
         CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r;
        INSERT INTO message_text_pending (thread_id, message_id)
        SELECT p_thread_id, e.doc ->> 'id' FROM jsonb_array_elements(p_messages) AS e(doc);
        RETURN QUERY
        SELECT json_build_object(
                   'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
                   'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
                   'messages', '[]'::json),
               (SELECT coalesce(json_object_agg(e.doc ->> 'id', t.last_sequence - p_count + e.ord), '{}'::json)
                  FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS e(doc, ord));
    END
    $f$;

    -- postgres.save (and the light saves save_new and save_appended: one function serves all
    -- three, the thread row locked first): the (id, sequence) of the messages inserted or
    -- updated, or one row (NULL, NULL) when p_synced and the thread is gone (nothing written).
    CREATE OR REPLACE FUNCTION threadstore_save(
        p_thread_id text, p_title text, p_attributes jsonb, p_platforms jsonb, p_source jsonb,
        p_platform_values jsonb, p_created_at text, p_updated_at text, p_new jsonb,
        p_edited jsonb, p_removed text[], p_synced boolean
    ) RETURNS TABLE (saved_id text, saved_sequence integer) LANGUAGE plpgsql SET search_path FROM CURRENT
    AS $f$
    DECLARE
        created boolean := false;
        fresh text[];
        changed text[] := '{}';
        base integer;
    BEGIN
        IF p_synced THEN
            PERFORM FROM threads WHERE id = p_thread_id FOR UPDATE;
            IF NOT FOUND THEN
                RETURN QUERY SELECT NULL::text, NULL::integer;
                RETURN;
            END IF;
        ELSE
            INSERT INTO threads AS s (id, title, attributes, platforms, source, created_at, updated_at)
            VALUES (p_thread_id, p_title, p_attributes, p_platforms, p_source, p_created_at::timestamptz,
                    p_updated_at::timestamptz)
            ON CONFLICT (id) DO UPDATE SET last_sequence = s.last_sequence
            RETURNING s.xmax = 0 INTO created;
        END IF;
        -- The messages of p_new this thread does not hold, in order (all of them in a thread
        -- just created); those it holds are updated below with the edited ones.
        IF created THEN
            SELECT coalesce(array_agg(e.doc ->> 'id' ORDER BY e.ord), '{}') INTO fresh
              FROM jsonb_array_elements(p_new) WITH ORDINALITY AS e(doc, ord);
        ELSE
            SELECT coalesce(array_agg(e.doc ->> 'id' ORDER BY e.ord), '{}') INTO fresh
              FROM jsonb_array_elements(p_new) WITH ORDINALITY AS e(doc, ord)
             WHERE NOT EXISTS (SELECT FROM messages AS m
                                WHERE m.thread_id = p_thread_id AND m.id = e.doc ->> 'id');
        END IF;
        UPDATE threads
           SET title = p_title, attributes = p_attributes, platforms = p_platforms, source = p_source,
               updated_at = p_updated_at::timestamptz, last_sequence = last_sequence + cardinality(fresh)
         WHERE id = p_thread_id
        RETURNING last_sequence - cardinality(fresh) INTO base;
        INSERT INTO thread_search AS s (thread_id, title, attributes, platforms, source, platform_values)
        VALUES (p_thread_id, p_title, p_attributes, p_platforms, p_source, p_platform_values)
        ON CONFLICT (thread_id) DO UPDATE
           SET title = excluded.title, attributes = excluded.attributes, platforms = excluded.platforms,
               source = excluded.source, platform_values = excluded.platform_values
         WHERE (s.title, s.attributes, s.platforms, s.source)
               IS DISTINCT FROM (excluded.title, excluded.attributes, excluded.platforms, excluded.source);
        IF NOT created AND (cardinality(fresh) < jsonb_array_length(p_new) OR p_edited <> '[]') THEN
            FOR saved_id, saved_sequence IN
                UPDATE messages AS m
                   SET turn = r.turn, role = r.role, content = r.content,
                       reasoning_content = r.reasoning_content, name = r.name, tool_call_id = r.tool_call_id,
                       tool_calls = r.tool_calls, attributes = r.attributes, timestamp = r.timestamp,
                       source = r.source, platforms = r.platforms, attachments = r.attachments,
                       metrics = r.metrics, reactions = r.reactions
                  FROM (SELECT value FROM jsonb_array_elements(p_new)
                        UNION ALL
                        SELECT value FROM jsonb_array_elements(p_edited)) AS e(doc)
                 CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
                 WHERE m.thread_id = p_thread_id AND m.id = r.id
                RETURNING m.id, m.sequence
            LOOP
                changed := changed || saved_id;
                RETURN NEXT;
            END LOOP;
        END IF;
        IF cardinality(fresh) > 0 THEN
            INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                                  tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                                  attachments, metrics, reactions)
            SELECT r.id, p_thread_id, base + array_position(fresh, r.id), r.turn, r.role, r.content,
                   r.reasoning_content, r.name, r.tool_call_id, r.tool_calls, r.attributes, r.timestamp,
                   r.source, r.platforms, r.attachments, r.metrics, r.reactions
              FROM jsonb_array_elements(p_new) AS e(doc)
             CROSS JOIN LATERAL jsonb_populate_record(NULL::messages, e.doc) AS r
             WHERE r.id = any(fresh);
            RETURN QUERY SELECT f.id, base + f.ord::integer FROM unnest(fresh) WITH ORDINALITY AS f(id, ord);
        END IF;
        IF cardinality(p_removed) > 0 THEN
            DELETE FROM messages WHERE thread_id = p_thread_id AND id = any(p_removed);
        END IF;
        INSERT INTO message_text_pending (thread_id, message_id)
        SELECT p_thread_id, q.id FROM unnest(changed || fresh) AS q(id);
    END
    $f$;

    -- postgres.pop_message: the document of the thread's highest-sequenced message, deleted;
    -- NULL when the thread does not exist or holds none. Under the thread row's lock no other
    -- writer comes between, so there is no second attempt.
    CREATE OR REPLACE FUNCTION threadstore_pop(p_thread_id text, p_updated_at text)
    RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
    DECLARE
        newest text;
        popped messages;
    BEGIN
        PERFORM FROM threads WHERE id = p_thread_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        SELECT id INTO newest FROM messages WHERE thread_id = p_thread_id ORDER BY sequence DESC LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        DELETE FROM messages AS m WHERE m.thread_id = p_thread_id AND m.id = newest
        RETURNING m.* INTO popped;
        UPDATE threads SET updated_at = p_updated_at::timestamptz WHERE id = p_thread_id;
        RETURN row_to_json(popped);
    END
    $f$;

    PERFORM create_distributed_function(
        'threadstore_append(text, text, integer, jsonb, boolean, text, jsonb, jsonb, jsonb, jsonb, text)',
        'p_thread_id', colocate_with := 'threads'
    );
    PERFORM create_distributed_function(
        'threadstore_save(text, text, jsonb, jsonb, jsonb, jsonb, text, text, jsonb, jsonb, text[], boolean)',
        'p_thread_id', colocate_with := 'threads'
    );
    PERFORM create_distributed_function(
        'threadstore_pop(text, text)', 'p_thread_id', colocate_with := 'threads'
    );
END
$$;

-- name: citus_append :one
-- postgres.append and postgres.append_creating (:create) on a distributed store: the thread's
-- worker runs it in one phase (citus_functions' threadstore_append); the same row, none when
-- the thread does not exist and :create is false.
SELECT thread, sequences
  FROM threadstore_append(:thread_id, :updated_at, :count, :messages::jsonb,
                          :create, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
                          :platform_values::jsonb, :created_at);

-- name: citus_save :many
-- postgres.save on a distributed store, run in one phase on the thread's worker
-- (citus_functions' threadstore_save): the same rows.
SELECT saved_id AS id, saved_sequence AS sequence
  FROM threadstore_save(:thread_id, :title, :attributes::jsonb, :platforms::jsonb, :source::jsonb,
                        :platform_values::jsonb, :created_at,
                        :updated_at, :new::jsonb, :edited::jsonb, :removed::text[],
                        :synced);

-- name: citus_pop :value
-- postgres.pop_message on a distributed store, run in one phase on the thread's worker
-- (citus_functions' threadstore_pop): the message removed, NULL when none.
SELECT threadstore_pop(:thread_id, :updated_at);

-- name: citus_alias_thread :value
-- The thread id an alias names (aliases.get_by_alias on a distributed store, where thread_aliases
-- is sharded by alias and threads by thread: Citus joins the two in no one statement).
SELECT thread_id FROM thread_aliases WHERE alias = :alias;

-- name: citus_take_queued :one
-- postgres.take_queued on a distributed store, where Citus plans no ctid across shards: the
-- entries taken are chosen by (thread_id, message_id) (every entry of a message chosen goes, the
-- indexer sets its current text once), and the messages are not locked ahead (Citus locks no
-- rows of several shards from the coordinator: a delete meeting the indexer may deadlock, and
-- the indexer's retry takes the batch again).
WITH batch AS (
    SELECT thread_id, message_id FROM message_text_pending LIMIT :batch
), queued AS (
    DELETE FROM message_text_pending AS p
     WHERE (p.thread_id, p.message_id) IN (SELECT thread_id, message_id FROM batch)
    RETURNING p.thread_id, p.message_id
), current AS (
    SELECT m.thread_id, m.id, left(threadstore_content_text(m.content), :max_chars) AS text
      FROM messages AS m
     WHERE (m.thread_id, m.id) IN (SELECT thread_id, message_id FROM queued)
)
SELECT (SELECT count(*) FROM queued) AS taken,
       (SELECT coalesce(json_agg(json_build_array(c.thread_id, c.id, c.text)), '[]'::json) FROM current AS c)
           AS messages;

-- name: citus_recent_ids :many
-- threads.list_recent on a distributed store, step 1: the page of ids (each worker gives its
-- newest, the coordinator merges them). Citus runs no subquery correlated with a page it
-- gathered, so citus_threads_by_ids then reads the documents.
SELECT id FROM threads ORDER BY updated_at DESC, id DESC LIMIT :limit OFFSET :offset;

-- name: citus_message_thread :value
-- search.get_thread_by_message_id on a distributed store, step 1 (asks every shard): the thread
-- holding the message, the first in id order when several do.
SELECT thread_id FROM messages WHERE id = :message_id ORDER BY thread_id LIMIT 1;

-- name: citus_threads_by_ids :many
-- The threads :ids as threads.get gives each (in no particular order), each worker reading its
-- own: (id, thread object, messages array).
SELECT t.id, row_to_json(t),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = t.id)
  FROM threads AS t
 WHERE t.id = any(:ids::text[]);

-- The thread searches on a distributed store, step 1 (search.by_*: Citus runs no subquery
-- correlated with a page it gathered): the page of matching thread ids, newest first. Each
-- worker joins its own threads to its search rows (co-located by thread) and gives its first
-- :offset + :limit; the coordinator merges them and cuts the page; citus_threads_by_ids then
-- reads the documents. Cost: every shard's matches, at most :offset + :limit ids from each.

-- name: citus_by_title :many
-- search.by_title's page of thread ids.
SELECT s.thread_id
  FROM thread_search AS s
  JOIN threads AS t ON t.id = s.thread_id
 WHERE s.title ~* :pattern
   AND (:wanted::jsonb IS NULL OR s.attributes @> :wanted::jsonb)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_by_content :many
-- search.by_content's page of thread ids: threads with an indexed message text (not queued)
-- or a queued message's content text matching :pattern.
SELECT t.id
  FROM threads AS t
 WHERE t.id IN (SELECT x.thread_id
                  FROM message_text AS x
                 WHERE x.text ~* :pattern
                   AND NOT EXISTS (SELECT FROM message_text_pending AS p
                                    WHERE p.thread_id = x.thread_id AND p.message_id = x.message_id)
                UNION
                SELECT q.thread_id
                  FROM messages AS q
                  JOIN message_text_pending AS p ON p.thread_id = q.thread_id AND p.message_id = q.id
                 WHERE threadstore_content_text(q.content) ~* :pattern)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_by_platform_reference :many
-- search.by_platform_reference's page of thread ids.
SELECT s.thread_id
  FROM thread_search AS s
  JOIN threads AS t ON t.id = s.thread_id
 WHERE s.platform_values @> jsonb_build_object(:platform::text, jsonb_build_array(:reference::jsonb))
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_by_attributes :many
-- search.by_attributes' page of thread ids.
SELECT s.thread_id
  FROM thread_search AS s
  JOIN threads AS t ON t.id = s.thread_id
 WHERE s.attributes @> :wanted::jsonb
   AND NOT EXISTS (SELECT 1
                     FROM jsonb_each(:wanted::jsonb) AS w
                    WHERE s.attributes -> w.key IS DISTINCT FROM w.value)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_by_platform :many
-- search.by_platform's page of thread ids.
SELECT s.thread_id
  FROM thread_search AS s
  JOIN threads AS t ON t.id = s.thread_id
 WHERE (s.platforms @> jsonb_build_object(:name::text, :wanted::jsonb)
        AND NOT EXISTS (SELECT 1
                          FROM jsonb_each(:wanted::jsonb) AS w
                         WHERE s.platforms -> :name::text -> w.key IS DISTINCT FROM w.value))
    OR (s.source @> (:wanted::jsonb || jsonb_build_object('name', :name::text))
        AND NOT EXISTS (SELECT 1
                          FROM jsonb_each(:wanted::jsonb) AS w
                         WHERE s.source -> w.key IS DISTINCT FROM w.value))
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_messages_by_attributes :many
-- search.messages_by_attributes on a distributed store, in one step: each worker gives its
-- first :offset + :limit matching messages' documents in (thread, sequence) order, the
-- coordinator merges them and cuts the page.
SELECT row_to_json(m)
  FROM messages AS m
 WHERE m.attributes @> threadstore_nested(:keys::text[], :value::jsonb)
   AND m.attributes #> :keys::text[] = :value::jsonb
 ORDER BY m.thread_id, m.sequence
 LIMIT :limit OFFSET :offset;

-- name: citus_messages_by_platforms :many
-- As citus_messages_by_attributes, on the messages' platforms.
SELECT row_to_json(m)
  FROM messages AS m
 WHERE m.platforms @> threadstore_nested(:keys::text[], :value::jsonb)
   AND m.platforms #> :keys::text[] = :value::jsonb
 ORDER BY m.thread_id, m.sequence
 LIMIT :limit OFFSET :offset;

-- name: citus_list_threads :many
-- bounded.list_threads on a distributed store, step 1: the page of thread ids after the
-- position (each worker's first :limit, merged); citus_summaries_by_ids then reads them.
SELECT id
  FROM threads
 WHERE (updated_at, id) < (:after_time::text::timestamptz, :after_id::text)
 ORDER BY updated_at DESC, id DESC
 LIMIT :limit;

-- name: citus_list_threads_by_attributes :many
-- bounded.list_threads_by_attributes on a distributed store, step 1: as citus_list_threads,
-- of the threads whose attributes hold every key of :wanted with an equal value.
SELECT s.thread_id
  FROM thread_search AS s
  JOIN threads AS t ON t.id = s.thread_id
 WHERE s.attributes @> :wanted::jsonb
   AND NOT EXISTS (SELECT 1
                     FROM jsonb_each(:wanted::jsonb) AS w
                    WHERE s.attributes -> w.key IS DISTINCT FROM w.value)
   AND (t.updated_at, t.id) < (:after_time::text::timestamptz, :after_id::text)
 ORDER BY t.updated_at DESC, t.id DESC
 LIMIT :limit;

-- name: citus_summaries_by_ids :many
-- The summaries of the threads :ids as bounded.list_threads gives each (in no particular
-- order), each worker reading its own: (id, summary object).
SELECT t.id,
       json_build_object(
           'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
           'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
           'message_count', (SELECT count(*) FROM messages AS c WHERE c.thread_id = t.id),
           'last_message', (SELECT m FROM messages AS m WHERE m.thread_id = t.id
                             ORDER BY m.sequence DESC LIMIT 1))
  FROM threads AS t
 WHERE t.id = any(:ids::text[]);

-- name: citus_export_ids :many
-- transfer.export_threads on a distributed store, step 1: the next :limit thread ids above
-- :after (NULL: from the first), in id order (each worker's first :limit, merged).
SELECT id FROM threads WHERE id > coalesce(:after, '') ORDER BY id LIMIT :limit;

-- name: citus_export_docs :many
-- Step 2: (id, document) of the threads :ids as transfer.export_threads gives them, in no
-- particular order.
SELECT d.id, d.doc FROM thread_docs AS d WHERE d.id = any(:ids::text[]);

-- name: citus_export_aliases :many
-- Step 3: the aliases of the threads :ids as (thread id, {alias, created_at}), oldest first
-- (thread_aliases is sharded by alias: every shard).
SELECT a.thread_id, json_build_object('alias', a.alias, 'created_at', a.created_at)
  FROM thread_aliases AS a
 WHERE a.thread_id = any(:ids::text[])
 ORDER BY a.created_at, a.alias;

-- name: citus_threads_to_delete :many
-- bounded.delete_threads on a distributed store, step 1: up to :batch ids of
-- count_threads_to_delete's threads, oldest first (Citus takes no row locks of several shards
-- from the coordinator, so nothing is locked yet; citus_delete_threads checks again).
SELECT t.id
  FROM threads AS t
 WHERE t.updated_at < :cutoff::text::timestamptz
   AND (:wanted::jsonb IS NULL
        OR EXISTS (SELECT 1
                     FROM thread_search AS s
                    WHERE s.thread_id = t.id
                      AND s.attributes @> :wanted::jsonb
                      AND NOT EXISTS (SELECT 1
                                        FROM jsonb_each(:wanted::jsonb) AS w
                                       WHERE s.attributes -> w.key IS DISTINCT FROM w.value)))
 ORDER BY t.updated_at, t.id
 LIMIT :batch;

-- name: citus_delete_threads :many
-- Step 2: deletes those of the threads :ids still last updated before :cutoff (each worker
-- reads the row again under its lock: a save or append since keeps its thread), with their
-- messages; returns the ids deleted, whose aliases citus_forget_aliases then deletes.
DELETE FROM threads
 WHERE id = any(:ids::text[]) AND updated_at < :cutoff::text::timestamptz
RETURNING id;

-- name: citus_fulltext_in_threads :many
-- search.fulltext_in_threads on a distributed store: each match's thread joined to its search
-- row on its shard (co-located by thread), where one node looks it up in a lateral subquery
-- kept apart by OFFSET 0, which Citus does not push down.
WITH walked AS MATERIALIZED (
    SELECT x.thread_id, x.message_id
      FROM (SELECT x.thread_id, x.message_id, x.stamp, x.words
              FROM message_text AS x
             ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
             LIMIT :recent) AS x
     CROSS JOIN CAST(:query AS tsquery) AS q
      JOIN thread_search AS s ON s.thread_id = x.thread_id AND s.attributes @> :wanted::jsonb
     WHERE x.words @@ q
       AND NOT EXISTS (SELECT 1
                         FROM jsonb_each(:wanted::jsonb) AS e
                        WHERE s.attributes -> e.key IS DISTINCT FROM e.value)
       AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
     ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
     LIMIT :ranked
), newest AS (
    SELECT thread_id, message_id FROM walked WHERE (SELECT count(*) FROM walked) = :ranked
     UNION ALL
    (SELECT x.thread_id, x.message_id
       FROM (SELECT x.thread_id, x.message_id, x.stamp
               FROM CAST(:query AS tsquery) AS q
               JOIN message_text AS x ON x.words @@ q
               JOIN thread_search AS s ON s.thread_id = x.thread_id AND s.attributes @> :wanted::jsonb
              WHERE (SELECT count(*) FROM walked) < :ranked
                AND NOT EXISTS (SELECT 1
                                  FROM jsonb_each(:wanted::jsonb) AS e
                                 WHERE s.attributes -> e.key IS DISTINCT FROM e.value)
                AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
             OFFSET 0) AS x
      ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
      LIMIT :ranked)
)
SELECT (SELECT EXISTS (SELECT 1 FROM message_text_pending)) AS queued,
       m.thread_id, m.id, m.sequence, m.role, ts_rank(x.words, r, 1)::float8 AS score, x.text
  FROM CAST(:ranking AS tsquery) AS r
 CROSS JOIN newest AS n
  JOIN message_text AS x ON x.thread_id = n.thread_id AND x.message_id = n.message_id
  JOIN messages AS m ON m.thread_id = x.thread_id AND m.id = x.message_id
 ORDER BY score DESC, m.timestamp DESC, m.id DESC, m.thread_id DESC
 LIMIT :limit OFFSET :offset;

-- name: citus_forget_aliases :exec
-- After threads.delete and threads.delete_many on a distributed store: the aliases of the threads
-- :ids (thread_aliases, sharded by alias, has no foreign key to cascade; asks every shard).
DELETE FROM thread_aliases WHERE thread_id = any(:ids::text[]);

-- name: citus_delete_many :rowcount
-- threads.delete_many on a distributed store (Citus locks no rows of several shards from the
-- coordinator): one statement over the shards of :ids, committed on every worker together.
DELETE FROM threads WHERE id = any(:ids::text[]);

-- name: analyze_indexed :exec
-- After the indexer's round of a bulk load (PostgresBackend._SETTLE_AFTER messages or more):
-- statistics of what the load wrote, so that searches are planned on the tables as they are.
ANALYZE threads, thread_search, thread_aliases, messages, message_text, message_text_pending;

-- name: clean_pending_lists :exec
-- ... and the GIN indexes the load's saves wrote (find_by_*: with 40,000 threads just loaded,
-- 12.6 ms instead of 0.6 reading their pending lists) merged now; a manual ANALYZE leaves them.
SELECT gin_clean_pending_list(i.indexrelid)
  FROM pg_index AS i
  JOIN pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_am AS a ON a.oid = c.relam
 WHERE a.amname = 'gin'
   AND c.relnamespace = current_schema()::regnamespace
   AND pg_has_role(c.relowner, 'USAGE');  -- as VACUUM, only its owner may (others: skipped)

-- name: vacuum_queue :exec
-- ... and the emptied queue truncated: searches check it, and a sequential scan reads every
-- dead page until VACUUM removes them (outside a transaction, as VACUUM must be).
VACUUM message_text_pending;
