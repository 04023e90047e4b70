-- threadstore schema, version 4: ranked full-text search (ThreadStore.search).

-- The words of each message's text, as threadstore.fulltext cuts them (the same words on every
-- backend), with their positions: a tsvector built by the client, never by to_tsvector, whose
-- parser cuts text differently. Kept with the text in message_text, off the write path as the
-- trigram index is: the background indexer (PostgresBackend._index_queued) computes both.
ALTER TABLE message_text ADD COLUMN words tsvector;
CREATE INDEX message_text_words_idx ON message_text USING gin (words);

-- Every stored message is queued once, so the indexer fills in the words; searches index what
-- is queued before they read (PostgresBackend.search), so nothing is missed meanwhile.
INSERT INTO message_text_pending (message_id) SELECT id FROM messages;
