-- threadstore schema, version 3: search indexes off the write path of appends.

-- Every append updates threads.updated_at, which threads_updated_at_idx indexes, so the update
-- cannot be HOT and wrote a new entry into every index of the row: the title trigram and four GIN
-- indexes, one of them an expression calling a SQL function (an append cost ~760 us against
-- ~505 us without them). The thread fields searches look at now live in thread_search, a copy
-- written only when they change; threads keeps its primary key and the updated_at index, as a
-- hand-written schema would.
CREATE TABLE thread_search (
    thread_id       text  COLLATE "C" PRIMARY KEY REFERENCES threads (id) ON DELETE CASCADE,
    title           text  NOT NULL,
    attributes      jsonb NOT NULL,
    platforms       jsonb NOT NULL,
    source          jsonb,
    -- threadstore.matching.platform_values(platforms), computed by the client at save: an index
    -- expression calling threadstore_platform_values cost ~150 us each time a row was written.
    platform_values jsonb NOT NULL
);

INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
SELECT id, title, attributes, platforms, source, threadstore_platform_values(platforms)
  FROM threads;

DROP INDEX threads_attributes_idx, threads_platforms_idx, threads_source_idx,
           threads_platform_values_idx;
DROP INDEX IF EXISTS threads_title_trgm_idx;

CREATE INDEX thread_search_attributes_idx ON thread_search USING gin (attributes jsonb_path_ops);
CREATE INDEX thread_search_platforms_idx ON thread_search USING gin (platforms jsonb_path_ops);
CREATE INDEX thread_search_source_idx ON thread_search USING gin (source jsonb_path_ops);
CREATE INDEX thread_search_platform_values_idx ON thread_search
    USING gin (platform_values jsonb_path_ops);

-- Content search reads message_text: each message's content text (threadstore_content_text),
-- filled off the write path. The trigram index on messages cost ~70 us per message written (a
-- save of 10 messages 1.70x a hand-written schema's, 1.22x without it); a write now only queues
-- the ids of the messages whose content it set in message_text_pending (a heap without indexes),
-- and PostgresBackend indexes them right after, in batches (postgres.index_text). Searches read
-- message_text for every message not queued and the content itself for those queued, so a
-- message is found as soon as its save returns.
CREATE TABLE message_text (
    message_id text COLLATE "C" PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    thread_id  text COLLATE "C" NOT NULL,
    text       text NOT NULL
);

CREATE TABLE message_text_pending (
    message_id text COLLATE "C" NOT NULL
);

INSERT INTO message_text (message_id, thread_id, text)
SELECT id, thread_id, threadstore_content_text(content)
  FROM messages
 WHERE threadstore_content_text(content) IS NOT NULL;

DROP INDEX IF EXISTS messages_content_trgm_idx;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops' AND pg_opclass_is_visible(oid)) THEN
        CREATE INDEX thread_search_title_trgm_idx ON thread_search USING gin (title gin_trgm_ops);
        CREATE INDEX message_text_trgm_idx ON message_text USING gin (text gin_trgm_ops);
    END IF;
END
$$;

-- Documents built from whole rows: json_agg over the row is about half the server time of
-- json_build_object naming each column (a thread of 1,000 messages: 5.9 against 13.1 ms), and the
-- column list is the table's. Every messages column is a Message field.
CREATE OR REPLACE VIEW message_docs AS
SELECT m.thread_id, m.sequence, row_to_json(m) AS doc
  FROM messages AS m;

CREATE OR REPLACE VIEW thread_docs AS
SELECT t.id, t.updated_at,
       json_build_object(
           'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
           'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
           'messages', coalesce((SELECT json_agg(m ORDER BY m.sequence)
                                   FROM messages AS m
                                  WHERE m.thread_id = t.id), '[]'::json)) AS doc
  FROM threads AS t;
