-- threadstore schema, version 6 (PostgreSQL: the GIN indexes of message_text keep no pending
-- list). FTS5 has no pending list; its counterpart is the many small segments each indexer batch
-- writes until automerge joins them. Merged into one b-tree per index here, once, so a store
-- migrated after a bulk load searches as one indexed in a single pass.
INSERT INTO message_fts (message_fts) VALUES ('optimize');
INSERT INTO message_trigrams (message_trigrams) VALUES ('optimize');
