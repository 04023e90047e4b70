-- threadstore schema, version 4: ranked full-text search (ThreadStore.search).

-- The words of each message's text, as threadstore.fulltext cuts them (the same words on every
-- backend), hex-encoded and space-separated (threadstore_fts_text, a function SQLiteBackend
-- registers on its connection), so that FTS5's ascii tokenizer splits them back exactly.
-- message_words is the FTS5 table's external content; its integer key is the FTS5 rowid,
-- which VACUUM keeps (messages' own rowids it may renumber).
CREATE TABLE message_words (
    id         INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL UNIQUE,
    words      TEXT    NOT NULL
) STRICT;

CREATE VIRTUAL TABLE message_fts USING fts5 (
    words, content = 'message_words', content_rowid = 'id', tokenize = 'ascii'
);

-- Kept in step by triggers in the writer's transaction, on every path that writes messages
-- (saves, appends, edits, imports, deletes, ON DELETE CASCADE): a message is searchable as
-- soon as its save returns, and never after it is gone.
CREATE TRIGGER messages_words_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_words (message_id, words)
    SELECT new.id, w FROM (SELECT threadstore_fts_text(new.content) AS w) WHERE w IS NOT NULL;
END;

CREATE TRIGGER messages_words_update AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content
BEGIN
    DELETE FROM message_words WHERE message_id = old.id;
    INSERT INTO message_words (message_id, words)
    SELECT new.id, w FROM (SELECT threadstore_fts_text(new.content) AS w) WHERE w IS NOT NULL;
END;

CREATE TRIGGER messages_words_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_words WHERE message_id = old.id;
END;

CREATE TRIGGER message_words_insert AFTER INSERT ON message_words
BEGIN
    INSERT INTO message_fts (rowid, words) VALUES (new.id, new.words);
END;

CREATE TRIGGER message_words_delete AFTER DELETE ON message_words
BEGIN
    INSERT INTO message_fts (message_fts, rowid, words) VALUES ('delete', old.id, old.words);
END;

INSERT INTO message_words (message_id, words)
SELECT id, w FROM (SELECT id, threadstore_fts_text(content) AS w FROM messages) WHERE w IS NOT NULL;
