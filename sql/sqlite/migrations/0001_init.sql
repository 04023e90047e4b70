-- threadstore schema, version 1. Table and column names follow existing deployments of this API.
-- SQLite: STRICT tables (a bytes value cannot slip into a TEXT column as a BLOB); JSON as TEXT;
-- times as ISO-8601 UTC text with microseconds, so text order is time order.

CREATE TABLE threads (
    id            TEXT    PRIMARY KEY,
    title         TEXT    NOT NULL,
    attributes    TEXT    NOT NULL DEFAULT '{}',
    platforms     TEXT    NOT NULL DEFAULT '{}',
    source        TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    -- The highest sequence handed out in this thread: new messages number on from it.
    last_sequence INTEGER NOT NULL DEFAULT 0
) STRICT;

-- list(): newest first with a stable tie-break.
CREATE INDEX threads_updated_at_idx ON threads (updated_at DESC, id DESC);

CREATE TABLE messages (
    id                TEXT    PRIMARY KEY,
    -- Checked at COMMIT, so a save can write its messages before the thread row.
    thread_id         TEXT    NOT NULL REFERENCES threads (id) ON DELETE CASCADE
                                       DEFERRABLE INITIALLY DEFERRED,
    sequence          INTEGER NOT NULL,
    turn              INTEGER,
    role              TEXT    NOT NULL,
    content           TEXT,
    reasoning_content TEXT,
    name              TEXT,
    tool_call_id      TEXT,
    tool_calls        TEXT,
    attributes        TEXT    NOT NULL DEFAULT '{}',
    timestamp         TEXT    NOT NULL,
    source            TEXT,
    platforms         TEXT    NOT NULL DEFAULT '{}',
    attachments       TEXT    NOT NULL DEFAULT '[]',
    metrics           TEXT    NOT NULL DEFAULT '{}',
    reactions         TEXT    NOT NULL DEFAULT '{}',
    -- SQLite checks UNIQUE row by row, so renumbering goes through negative values (messages.sql).
    UNIQUE (thread_id, sequence)
) STRICT;

CREATE TABLE thread_aliases (
    alias      TEXT PRIMARY KEY,
    thread_id  TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX thread_aliases_thread_id_idx ON thread_aliases (thread_id, created_at);

-- The JSON documents reads return: one object per message, keys named like Message's fields,
-- decoded by the client in a single typed pass. json() keeps stored JSON from being quoted.
CREATE VIEW message_docs AS
SELECT thread_id, sequence,
       json_object(
           'id', id, 'thread_id', thread_id, 'sequence', sequence, 'turn', turn, 'role', role,
           'content', json(content), 'reasoning_content', reasoning_content, 'name', name,
           'tool_call_id', tool_call_id, 'tool_calls', json(tool_calls),
           'attributes', json(attributes), 'timestamp', timestamp, 'source', json(source),
           'platforms', json(platforms), 'attachments', json(attachments),
           'metrics', json(metrics), 'reactions', json(reactions)) AS doc
  FROM messages;

-- SQLite 3.40 has no ORDER BY inside an aggregate; a window over the ordered rows gives the
-- same guaranteed order.
CREATE VIEW thread_docs AS
SELECT t.id, t.updated_at,
       json_object(
           'id', t.id, 'title', t.title, 'attributes', json(t.attributes),
           'platforms', json(t.platforms), 'source', json(t.source),
           'created_at', t.created_at, 'updated_at', t.updated_at,
           'messages', json(coalesce(
               (SELECT json_group_array(json(d.doc)) OVER (
                           ORDER BY d.sequence ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                  FROM message_docs d
                 WHERE d.thread_id = t.id
                 LIMIT 1), '[]'))) AS doc
  FROM threads t;
