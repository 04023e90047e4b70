-- threadstore schema, version 4: ranked full-text search (ThreadStore.search).

-- The words of each message's text, as threadstore.fulltext cuts them (the same words on every
-- backend), hex-encoded and space-separated, so that FTS5's ascii tokenizer splits them back
-- exactly. message_words is the FTS5 table's external content; its integer key is the FTS5
-- rowid, which VACUUM keeps (messages' own rowids it may renumber).
CREATE TABLE message_words (
    id         INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL UNIQUE,
    words      TEXT    NOT NULL
) STRICT;

CREATE VIRTUAL TABLE message_fts USING fts5 (
    words, content = 'message_words', content_rowid = 'id', tokenize = 'ascii'
);

CREATE TRIGGER message_words_insert AFTER INSERT ON message_words
BEGIN
    INSERT INTO message_fts (rowid, words) VALUES (new.id, new.words);
END;

CREATE TRIGGER message_words_delete AFTER DELETE ON message_words
BEGIN
    INSERT INTO message_fts (message_fts, rowid, words) VALUES ('delete', old.id, old.words);
END;

-- Writes only queue the ids of the messages whose content they set (a table without indexes):
-- FTS5 writes a segment at every commit, which doubled the time of a save of 10 messages and
-- added 20-30% to an append. SQLiteBackend indexes the queue right after, in batches, and
-- before every search, so a message is searchable as soon as its save returns. Deleting a
-- message removes its words at once, so it is never found after it is gone. Triggers cover every
-- path that writes messages (saves, appends, edits, imports, deletes, ON DELETE CASCADE).
CREATE TABLE message_words_pending (
    message_id TEXT NOT NULL
) STRICT;

CREATE TRIGGER messages_words_inserted AFTER INSERT ON messages
BEGIN
    INSERT INTO message_words_pending (message_id) VALUES (new.id);
END;

CREATE TRIGGER messages_words_updated AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content
BEGIN
    INSERT INTO message_words_pending (message_id) VALUES (new.id);
END;

CREATE TRIGGER messages_words_deleted AFTER DELETE ON messages
BEGIN
    DELETE FROM message_words WHERE message_id = old.id;
END;

INSERT INTO message_words_pending (message_id) SELECT id FROM messages;
