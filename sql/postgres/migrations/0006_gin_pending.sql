-- threadstore schema, version 6: the GIN indexes of message_text keep no pending list.
-- With fastupdate (PostgreSQL's default), new entries wait in an unordered pending list that
-- every search reads in full until VACUUM (autovacuum, eventually) merges it: after a bulk load
-- of 200,000 messages, a word in 10 messages read 495 buffers and took 52-87 ms, not 8 ms
-- (issue 28). Only the background indexer writes these indexes, off the write path, so the
-- cheaper inserts fastupdate buys are not worth a search that slows as the queue grows.
-- Entries already pending are merged now (gin_clean_pending_list), on every GIN index of the
-- schema: the other ones are written by saves, where the pending list still pays.
ALTER INDEX message_text_words_idx SET (fastupdate = off);
DO $$
BEGIN
    IF to_regclass('message_text_trgm_idx') IS NOT NULL THEN
        ALTER INDEX message_text_trgm_idx SET (fastupdate = off);
    END IF;
END
$$;
SELECT gin_clean_pending_list(i.indexrelid)
  FROM pg_index AS i
  JOIN pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_am AS a ON a.oid = c.relam
 WHERE a.amname = 'gin'
   AND c.relnamespace = current_schema()::regnamespace;
