-- threadstore schema, version 7: every per-thread table is keyed by thread first, so that the
-- schema distributes by thread on Citus (docs/citus.md), where every primary and unique key of a
-- distributed table must include its distribution column, and a foreign key between two of them
-- must too. A message is (thread_id, id): ids the store mints never repeat, but ids that arrive
-- from outside (imports, adopted databases) may repeat across threads, each thread holding its
-- own message. get_thread_by_message_id finds a message through messages_id_idx.
ALTER TABLE message_text DROP CONSTRAINT message_text_message_id_fkey;
ALTER TABLE message_text DROP CONSTRAINT message_text_pkey;
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (thread_id, id);
CREATE INDEX messages_id_idx ON messages (id);
ALTER TABLE message_text ADD CONSTRAINT message_text_pkey PRIMARY KEY (thread_id, message_id);
ALTER TABLE message_text ADD CONSTRAINT message_text_message_fkey FOREIGN KEY (thread_id, message_id)
    REFERENCES messages (thread_id, id) ON DELETE CASCADE;

-- The indexer's queue names the thread too (a queued id alone could be any thread's message).
-- Entries of messages deleted meanwhile are dropped: the indexer would have skipped them.
ALTER TABLE message_text_pending ADD COLUMN thread_id text COLLATE "C";
UPDATE message_text_pending AS p SET thread_id = m.thread_id FROM messages AS m WHERE m.id = p.message_id;
DELETE FROM message_text_pending WHERE thread_id IS NULL;
ALTER TABLE message_text_pending ALTER COLUMN thread_id SET NOT NULL;
