-- threadstore schema, version 7: every per-thread table is keyed by thread first, as on
-- PostgreSQL (where it lets the schema distribute by thread on Citus). A message is
-- (thread_id, id): ids the store mints never repeat, but ids that arrive from outside (imports,
-- adopted databases) may repeat across threads, each thread holding its own message.
-- get_thread_by_message_id finds a message through messages_id_idx.
-- SQLite cannot change a primary key in place: messages is rebuilt (rowids kept: stats reads
-- them). The views and triggers that name it go first (a rename checks the views) and come back
-- as they were.
DROP VIEW thread_docs;
DROP VIEW message_docs;
DROP TRIGGER messages_words_inserted;
DROP TRIGGER messages_words_updated;
DROP TRIGGER messages_words_deleted;

CREATE TABLE messages_keyed (
    id                TEXT    NOT NULL,
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
    PRIMARY KEY (thread_id, id),
    -- SQLite checks UNIQUE row by row, so renumbering goes through negative values (messages.sql).
    UNIQUE (thread_id, sequence)
) STRICT;

INSERT INTO messages_keyed (rowid, id, thread_id, sequence, turn, role, content, reasoning_content,
                            name, tool_call_id, tool_calls, attributes, timestamp, source,
                            platforms, attachments, metrics, reactions)
SELECT rowid, id, thread_id, sequence, turn, role, content, reasoning_content, name, tool_call_id,
       tool_calls, attributes, timestamp, source, platforms, attachments, metrics, reactions
  FROM messages;

DROP TABLE messages;
ALTER TABLE messages_keyed RENAME TO messages;
CREATE INDEX messages_id_idx ON messages (id);

-- The words and the indexer's queue name the thread too. message_words keeps its integer keys,
-- the rowids of its two FTS5 tables, which therefore stay as they are.
DROP TRIGGER message_words_insert;
DROP TRIGGER message_words_delete;

CREATE TABLE message_words_keyed (
    id         INTEGER PRIMARY KEY,
    thread_id  TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    words      TEXT,
    text       TEXT,
    UNIQUE (thread_id, message_id)
) STRICT;

INSERT INTO message_words_keyed (id, thread_id, message_id, words, text)
SELECT w.id, m.thread_id, w.message_id, w.words, w.text
  FROM message_words AS w
  JOIN messages AS m ON m.id = w.message_id;

DROP TABLE message_words;
ALTER TABLE message_words_keyed RENAME TO message_words;
CREATE INDEX message_words_unindexed_idx ON message_words (thread_id, message_id) WHERE text IS NULL;

CREATE TRIGGER message_words_insert AFTER INSERT ON message_words
BEGIN
    INSERT INTO message_fts (rowid, words) SELECT new.id, new.words WHERE new.words IS NOT NULL;
    INSERT INTO message_trigrams (rowid, text) SELECT new.id, new.text WHERE new.text IS NOT NULL;
END;

CREATE TRIGGER message_words_delete AFTER DELETE ON message_words
BEGIN
    INSERT INTO message_fts (message_fts, rowid, words)
    SELECT 'delete', old.id, old.words WHERE old.words IS NOT NULL;
    INSERT INTO message_trigrams (message_trigrams, rowid, text)
    SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
END;

-- Queue entries keep their order (their rowids); those of messages deleted meanwhile go, as
-- the indexer would have skipped them.
CREATE TABLE message_words_pending_keyed (
    thread_id  TEXT NOT NULL,
    message_id TEXT NOT NULL
) STRICT;

INSERT INTO message_words_pending_keyed (rowid, thread_id, message_id)
SELECT p.rowid, m.thread_id, p.message_id
  FROM message_words_pending AS p
  JOIN messages AS m ON m.id = p.message_id;

DROP TABLE message_words_pending;
ALTER TABLE message_words_pending_keyed RENAME TO message_words_pending;

CREATE TRIGGER messages_words_inserted AFTER INSERT ON messages
BEGIN
    INSERT INTO message_words_pending (thread_id, message_id) VALUES (new.thread_id, new.id);
END;

CREATE TRIGGER messages_words_updated AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content
BEGIN
    INSERT INTO message_words_pending (thread_id, message_id) VALUES (new.thread_id, new.id);
END;

CREATE TRIGGER messages_words_deleted AFTER DELETE ON messages
BEGIN
    DELETE FROM message_words WHERE thread_id = old.thread_id AND message_id = old.id;
END;

-- As version 1 made them.
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
