-- threadstore schema, version 8: search() ranks the newest matches (threadstore.fulltext.RANKED).
-- message_words keeps each message's timestamp (stamp, made comparable: a fraction of six
-- digits), set by the background indexer with its words; message_words_recent_idx walks them
-- newest first, so the newest matches of a word found in most messages are read without reading
-- every match. A message whose timestamp changes is queued again, as one whose content changes.
-- Every row is kept.
ALTER TABLE message_words ADD COLUMN stamp TEXT;
UPDATE message_words
   SET stamp = (SELECT substr(m.timestamp, 1, 19)
                       || CASE WHEN length(m.timestamp) = 20 THEN '.000000' ELSE substr(m.timestamp, 20, 7) END
                  FROM messages AS m
                 WHERE m.thread_id = message_words.thread_id AND m.id = message_words.message_id);
CREATE INDEX message_words_recent_idx ON message_words (stamp, message_id, thread_id);

DROP TRIGGER messages_words_updated;
CREATE TRIGGER messages_words_updated AFTER UPDATE OF content, timestamp ON messages
WHEN old.content IS NOT new.content OR old.timestamp IS NOT new.timestamp
BEGIN
    INSERT INTO message_words_pending (thread_id, message_id) VALUES (new.thread_id, new.id);
END;
