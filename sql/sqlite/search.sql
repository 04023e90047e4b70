-- Searches and lookups. Each thread query picks its page of ids first, newest updated_at first
-- (id breaks ties), then builds documents for that page only: one JSON array, however many
-- threads match. A NULL :limit means no limit (SQLite spells that LIMIT -1); the ordered window
-- stands in for the ORDER BY inside an aggregate that SQLite 3.40 lacks.
-- Matching runs in the threadstore_* and regexp functions the backend registers on the
-- connection (threadstore.matching: the same code the memory backend runs). No SQLite index
-- type serves regex or JSON-equality tests, so most of these scan the threads (or messages)
-- table, reading each row once; by_title and by_content have twins in sqlite.sql, which test
-- only the candidates of a trigram index (migration 0004) when the pattern holds a literal of 3
-- characters or more.

-- name: by_title :value
-- Threads whose title matches :pattern (Python spelling, see threadstore.matching) and, unless
-- :wanted is null, whose attributes hold every key of :wanted with an equal value.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE title REGEXP :pattern
                             AND (:wanted IS NULL OR threadstore_has_all(attributes, :wanted))
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: by_content :value
-- Threads with a stored message whose content text matches :pattern.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE id IN (SELECT thread_id
                                          FROM messages
                                         WHERE threadstore_content_text(content) REGEXP :pattern)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: by_platform_reference :value
-- Threads whose platforms[:platform] object has :reference (JSON text) as one of its values.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE threadstore_has_reference(platforms, :platform, :reference)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: by_attributes :value
-- Threads whose attributes hold every key of :wanted (a JSON object) with an equal value.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE threadstore_has_all(attributes, :wanted)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: by_platform :value
-- Threads whose platforms[:name] holds every key of :wanted with an equal value, or whose
-- source is named :name and holds them.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at, d.doc
                    FROM (SELECT id, updated_at
                            FROM threads
                           WHERE threadstore_platform_match(platforms, source, :name, :wanted)
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t
                    JOIN thread_docs AS d ON d.id = t.id) AS page
           LIMIT 1),
         '[]');

-- name: messages_by_attributes :value
-- Messages whose attributes at the key path :keys (a JSON array) equal :value (JSON text),
-- ordered by thread, then sequence.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.thread_id, page.sequence
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT m.thread_id, m.sequence, d.doc
                    FROM (SELECT thread_id, sequence
                            FROM messages
                           WHERE threadstore_value_equals(attributes, :keys, :value)
                           ORDER BY thread_id, sequence
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS m
                    JOIN message_docs AS d ON d.thread_id = m.thread_id AND d.sequence = m.sequence) AS page
           LIMIT 1),
         '[]');

-- name: messages_by_platforms :value
-- As messages_by_attributes, on the messages' platforms.
SELECT coalesce(
         (SELECT json_group_array(json(page.doc)) OVER (
                     ORDER BY page.thread_id, page.sequence
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT m.thread_id, m.sequence, d.doc
                    FROM (SELECT thread_id, sequence
                            FROM messages
                           WHERE threadstore_value_equals(platforms, :keys, :value)
                           ORDER BY thread_id, sequence
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS m
                    JOIN message_docs AS d ON d.thread_id = m.thread_id AND d.sequence = m.sequence) AS page
           LIMIT 1),
         '[]');

-- name: get_thread_by_message_id :value
-- The thread holding a message (messages_id_idx); None when no thread holds it. An id held by
-- several threads (ids from outside may repeat across threads) names the first of them in id
-- order, as on every backend.
SELECT doc FROM thread_docs
 WHERE id = (SELECT thread_id FROM messages WHERE id = :message_id ORDER BY thread_id LIMIT 1);

-- name: fulltext :many
-- Messages matching :query (FTS5 syntax, threadstore.fulltext.fts5_query) on message_fts, at
-- most the :ranked newest (timestamp, then id, then thread id), best bm25 first, then the
-- newest. The newest matches come from the :recent newest indexed messages
-- (message_words_recent_idx), whose rowids bound the FTS5 scan (the indexer numbers messages
-- as it meets them, mostly in time order); when fewer than :ranked of them match, from every
-- match instead (the walk's count gates that scan), so both give the same newest matches.
-- Each row also says whether messages wait in message_words_pending: SQLiteBackend.search then
-- indexes them and asks again. Queued messages are left out (their words may be those of an
-- edited-away text): search.unindexed matches their current text.
WITH recent AS MATERIALIZED (
    SELECT id FROM message_words ORDER BY stamp DESC, message_id DESC, thread_id DESC LIMIT :recent
), walked AS MATERIALIZED (
    SELECT w.id
      FROM message_fts
      JOIN message_words AS w ON w.id = message_fts.rowid
     WHERE message_fts MATCH :query
       AND message_fts.rowid BETWEEN (SELECT min(id) FROM recent) AND (SELECT max(id) FROM recent)
       AND +message_fts.rowid IN (SELECT id FROM recent)
       AND (w.thread_id, w.message_id) NOT IN (SELECT thread_id, message_id FROM message_words_pending)
     ORDER BY w.stamp DESC, w.message_id DESC, w.thread_id DESC
     LIMIT :ranked
), newest AS MATERIALIZED (
    SELECT id FROM walked WHERE (SELECT count(*) FROM walked) = :ranked
     UNION ALL
    SELECT id
      FROM (SELECT w.id
              FROM message_fts
              JOIN message_words AS w ON w.id = message_fts.rowid
             WHERE message_fts MATCH :query
               AND (w.thread_id, w.message_id) NOT IN (SELECT thread_id, message_id FROM message_words_pending)
             ORDER BY w.stamp DESC, w.message_id DESC, w.thread_id DESC
             -- the walk's count gates the scan: a LIMIT of 0 never starts it (a WHERE term
             -- did, reading every match of a word in most messages: +8 ms at 200,000)
             LIMIT CASE WHEN (SELECT count(*) FROM walked) < :ranked THEN :ranked ELSE 0 END)
)
SELECT EXISTS (SELECT 1 FROM message_words_pending) AS queued,
       m.thread_id, m.id, m.sequence, m.role, -bm25(message_fts) AS score, m.content
  FROM message_fts
  JOIN message_words AS w ON w.id = message_fts.rowid
  JOIN messages AS m ON m.thread_id = w.thread_id AND m.id = w.message_id
 WHERE message_fts MATCH :query
   AND message_fts.rowid BETWEEN (SELECT min(id) FROM newest) AND (SELECT max(id) FROM newest)
   AND +message_fts.rowid IN (SELECT id FROM newest)
 ORDER BY score DESC, w.stamp DESC, m.id DESC, m.thread_id DESC
 LIMIT :limit OFFSET :offset;

-- name: fulltext_in_threads :many
-- fulltext, in the threads whose attributes hold every key of :wanted with an equal value.
WITH recent AS MATERIALIZED (
    SELECT id FROM message_words ORDER BY stamp DESC, message_id DESC, thread_id DESC LIMIT :recent
), walked AS MATERIALIZED (
    SELECT w.id
      FROM message_fts
      JOIN message_words AS w ON w.id = message_fts.rowid
     WHERE message_fts MATCH :query
       AND message_fts.rowid BETWEEN (SELECT min(id) FROM recent) AND (SELECT max(id) FROM recent)
       AND +message_fts.rowid IN (SELECT id FROM recent)
       AND (w.thread_id, w.message_id) NOT IN (SELECT thread_id, message_id FROM message_words_pending)
       AND threadstore_has_all((SELECT t.attributes FROM threads AS t WHERE t.id = w.thread_id), :wanted)
     ORDER BY w.stamp DESC, w.message_id DESC, w.thread_id DESC
     LIMIT :ranked
), newest AS MATERIALIZED (
    SELECT id FROM walked WHERE (SELECT count(*) FROM walked) = :ranked
     UNION ALL
    SELECT id
      FROM (SELECT w.id
              FROM message_fts
              JOIN message_words AS w ON w.id = message_fts.rowid
             WHERE message_fts MATCH :query
               AND (w.thread_id, w.message_id) NOT IN (SELECT thread_id, message_id FROM message_words_pending)
               AND threadstore_has_all((SELECT t.attributes FROM threads AS t WHERE t.id = w.thread_id), :wanted)
             ORDER BY w.stamp DESC, w.message_id DESC, w.thread_id DESC
             -- the walk's count gates the scan: a LIMIT of 0 never starts it (a WHERE term
             -- did, reading every match of a word in most messages: +8 ms at 200,000)
             LIMIT CASE WHEN (SELECT count(*) FROM walked) < :ranked THEN :ranked ELSE 0 END)
)
SELECT EXISTS (SELECT 1 FROM message_words_pending) AS queued,
       m.thread_id, m.id, m.sequence, m.role, -bm25(message_fts) AS score, m.content
  FROM message_fts
  JOIN message_words AS w ON w.id = message_fts.rowid
  JOIN messages AS m ON m.thread_id = w.thread_id AND m.id = w.message_id
 WHERE message_fts MATCH :query
   AND message_fts.rowid BETWEEN (SELECT min(id) FROM newest) AND (SELECT max(id) FROM newest)
   AND +message_fts.rowid IN (SELECT id FROM newest)
 ORDER BY score DESC, w.stamp DESC, m.id DESC, m.thread_id DESC
 LIMIT :limit OFFSET :offset;

-- name: queued :value
-- Whether message ids wait in message_words_pending (a search that found nothing asks).
SELECT EXISTS (SELECT 1 FROM message_words_pending);

-- name: unindexed :many
-- The messages queued in message_words_pending (written, not indexed yet), for
-- backends.indexer.unindexed_hits to match on their current text: (thread id, id, sequence, role,
-- timestamp, content text, the thread's attributes).
SELECT m.thread_id, m.id, m.sequence, m.role, m.timestamp, threadstore_content_text(m.content),
       t.attributes
  FROM messages AS m
  JOIN threads AS t ON t.id = m.thread_id
 WHERE (m.thread_id, m.id) IN (SELECT thread_id, message_id FROM message_words_pending);

-- name: titles :many
-- (id, title) of the threads among :ids (a JSON array): the titles of search()'s hits.
SELECT id, title FROM threads WHERE id IN (SELECT value FROM json_each(:ids));
