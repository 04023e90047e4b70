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

-- threadstore_content_text, split so that PostgreSQL inlines it: the string case (nearly every
-- message) is then two built-in operators where the index expression and the search evaluate it,
-- and only list content calls a function. A SQL function with a subquery is never inlined; as an
-- index expression it cost 150-200 us a row written.
CREATE FUNCTION threadstore_content_parts(content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT string_agg(part ->> 'text', E'\n' ORDER BY position)
          FROM jsonb_array_elements(content) WITH ORDINALITY AS p (part, position)
         WHERE jsonb_typeof(part) = 'object'
           AND part -> 'type' = '"text"'::jsonb
           AND jsonb_typeof(part -> 'text') = 'string');

DROP INDEX IF EXISTS messages_content_trgm_idx;

CREATE OR REPLACE FUNCTION threadstore_content_text(content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE jsonb_typeof(content)
           WHEN 'string' THEN content #>> '{}'
           WHEN 'array' THEN threadstore_content_parts(content)
       END;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops' AND pg_opclass_is_visible(oid)) THEN
        CREATE INDEX thread_search_title_trgm_idx ON thread_search USING gin (title gin_trgm_ops);
        CREATE INDEX messages_content_trgm_idx ON messages
            USING gin (threadstore_content_text(content) gin_trgm_ops);
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
