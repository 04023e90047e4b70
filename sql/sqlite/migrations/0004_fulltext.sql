-- threadstore schema, version 4: ranked full-text search (ThreadStore.search), and trigram
-- indexes that narrow search_by_content and search_by_title.

-- Each message with content text: its words, as threadstore.fulltext cuts them (the same words
-- on every backend), hex-encoded and space-separated, so that FTS5's ascii tokenizer splits them
-- back exactly (NULL without words: such rows are not documents of message_fts, whose bm25 counts
-- its documents); and its text as threadstore.matching.fold gives it, for the trigram index
-- (NULL when too long to index: those are tested one by one). message_words is the external content
-- of both FTS5 tables; its integer key is their rowid, which VACUUM keeps (messages' own rowids
-- it may renumber).
CREATE TABLE message_words (
    id         INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL UNIQUE,
    words      TEXT,
    text       TEXT
) STRICT;

CREATE INDEX message_words_unindexed_idx ON message_words (message_id) WHERE text IS NULL;

CREATE VIRTUAL TABLE message_fts USING fts5 (
    words, content = 'message_words', content_rowid = 'id', tokenize = 'ascii'
);

-- Case is folded before (fold), so that this index and the REGEXP that checks its candidates
-- agree on what case-insensitive means.
CREATE VIRTUAL TABLE message_trigrams USING fts5 (
    text, content = 'message_words', content_rowid = 'id', tokenize = 'trigram case_sensitive 1'
);

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

-- Writes only queue the ids of the messages whose content they set (a table without indexes):
-- FTS5 writes a segment at every commit, which doubled the time of a save of 10 messages and
-- added 20-30% to an append. SQLiteBackend indexes the queue right after, in batches, and
-- before every search, so a message is searchable as soon as its save returns. Deleting a
-- message removes its words at once, so it is never found after it is gone. Triggers cover every
-- path that writes messages (saves, appends, edits, imports, deletes, ON DELETE CASCADE).
-- search_by_content tests the queued messages one by one besides the trigram index's candidates.
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

-- Thread titles, folded, for search_by_title's trigram index; kept as message_words is: writes
-- queue the thread's id, the indexer (SQLiteBackend) sets the row, search_by_title tests the
-- queued threads one by one besides the index's candidates.
CREATE TABLE thread_titles (
    id        INTEGER PRIMARY KEY,
    thread_id TEXT    NOT NULL UNIQUE,
    text      TEXT    NOT NULL
) STRICT;

CREATE VIRTUAL TABLE title_trigrams USING fts5 (
    text, content = 'thread_titles', content_rowid = 'id', tokenize = 'trigram case_sensitive 1'
);

CREATE TRIGGER thread_titles_insert AFTER INSERT ON thread_titles
BEGIN
    INSERT INTO title_trigrams (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER thread_titles_delete AFTER DELETE ON thread_titles
BEGIN
    INSERT INTO title_trigrams (title_trigrams, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TABLE thread_titles_pending (
    thread_id TEXT NOT NULL
) STRICT;

CREATE TRIGGER threads_title_inserted AFTER INSERT ON threads
BEGIN
    INSERT INTO thread_titles_pending (thread_id) VALUES (new.id);
END;

CREATE TRIGGER threads_title_updated AFTER UPDATE OF title ON threads
WHEN old.title IS NOT new.title
BEGIN
    INSERT INTO thread_titles_pending (thread_id) VALUES (new.id);
END;

CREATE TRIGGER threads_title_deleted AFTER DELETE ON threads
BEGIN
    DELETE FROM thread_titles WHERE thread_id = old.id;
END;

INSERT INTO thread_titles_pending (thread_id) SELECT id FROM threads;
