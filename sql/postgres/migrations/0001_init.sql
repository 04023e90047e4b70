-- threadstore schema, version 1. Table and column names follow existing deployments of this API.

-- Ids and aliases compare by code point ("C"), as Python and SQLite do, whatever the database's
-- default collation: list()'s tie-break on id orders alike on every backend.
CREATE TABLE threads (
    id            text        COLLATE "C" PRIMARY KEY,
    title         text        NOT NULL,
    attributes    jsonb       NOT NULL DEFAULT '{}',
    platforms     jsonb       NOT NULL DEFAULT '{}',
    source        jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- The highest sequence handed out in this thread: new messages number on from it.
    last_sequence integer     NOT NULL DEFAULT 0
);

-- list(): newest first with a stable tie-break.
CREATE INDEX threads_updated_at_idx ON threads (updated_at DESC, id DESC);

CREATE TABLE messages (
    id                text        COLLATE "C" PRIMARY KEY,
    thread_id         text        COLLATE "C" NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    sequence          integer     NOT NULL,
    turn              integer,
    role              text        NOT NULL,
    content           jsonb,
    reasoning_content text,
    name              text,
    tool_call_id      text,
    tool_calls        jsonb,
    attributes        jsonb       NOT NULL DEFAULT '{}',
    timestamp         timestamptz NOT NULL,
    source            jsonb,
    platforms         jsonb       NOT NULL DEFAULT '{}',
    attachments       jsonb       NOT NULL DEFAULT '[]',
    metrics           jsonb       NOT NULL DEFAULT '{}',
    reactions         jsonb       NOT NULL DEFAULT '{}',
    -- Checked at the end of each statement, so one UPDATE can renumber a thread's messages.
    CONSTRAINT messages_thread_sequence_key UNIQUE (thread_id, sequence) DEFERRABLE INITIALLY IMMEDIATE
);

CREATE TABLE thread_aliases (
    alias      text        COLLATE "C" PRIMARY KEY,
    thread_id  text        COLLATE "C" NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX thread_aliases_thread_id_idx ON thread_aliases (thread_id, created_at);

-- The JSON documents reads return: one object per message, keys named like Message's fields,
-- decoded by the client in a single typed pass.
CREATE VIEW message_docs AS
SELECT thread_id, sequence,
       json_build_object(
           'id', id, 'thread_id', thread_id, 'sequence', sequence, 'turn', turn, 'role', role,
           'content', content, 'reasoning_content', reasoning_content, 'name', name,
           'tool_call_id', tool_call_id, 'tool_calls', tool_calls, 'attributes', attributes,
           'timestamp', timestamp, 'source', source, 'platforms', platforms,
           'attachments', attachments, 'metrics', metrics, 'reactions', reactions) AS doc
  FROM messages;

CREATE VIEW thread_docs AS
SELECT t.id, t.updated_at,
       json_build_object(
           'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
           'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
           'messages', coalesce((SELECT json_agg(d.doc ORDER BY d.sequence)
                                   FROM message_docs d
                                  WHERE d.thread_id = t.id), '[]'::json)) AS doc
  FROM threads t;
