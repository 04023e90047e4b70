-- threadstore schema, version 5: words cut anew (threadstore.fulltext): text in NFC, the dotted
-- capital I lowercased to i, each Thai and Lao character a word of its own. Every stored message
-- is queued once, so the indexer cuts its words again; searches index what is queued before
-- they read, so nothing is missed meanwhile.
INSERT INTO message_words_pending (message_id) SELECT id FROM messages;
