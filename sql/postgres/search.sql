-- Searches and lookups, one round trip each however many threads match.
-- Shape of each thread search: "matched" finds the matching rows on the search's index (the
-- OFFSET 0 keeps the planner from walking threads_updated_at_idx and filtering every row
-- instead, which a generic plan, blind to how selective the parameters are, would otherwise
-- pick); "page" orders those newest updated_at first (id breaks ties) and cuts the page; a row
-- per thread of the page, as threads.list_recent gives them, each looked up by primary key. Cost grows with
-- the number of matches, not with the size of the store. A NULL :limit means no limit.
-- Thread fields are matched in thread_search (the indexed copy of what searches look at, see
-- migration 0003); each match's updated_at is then one primary-key lookup in threads (as a join,
-- the generic plan hashed every thread read through threads_updated_at_idx: 3.3 ms, not 0.6).
-- Patterns arrive checked and spelled for ~* by threadstore.matching; JSON values as jsonb.

-- name: by_title :many
-- Threads whose title matches :pattern (trigram index thread_search_title_trgm_idx) and, unless
-- :wanted is null, whose attributes hold every key of :wanted with an equal value.
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM (SELECT s.thread_id AS id,
                       (SELECT t.updated_at FROM threads AS t WHERE t.id = s.thread_id) AS updated_at
                  FROM thread_search AS s
                 WHERE title ~* :pattern
                   AND (:wanted::jsonb IS NULL OR s.attributes @> :wanted::jsonb)
                OFFSET 0) AS matched
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: by_content :many
-- Threads with a stored message whose content text matches :pattern: message_text (trigram
-- index message_text_trgm_idx) for every message not queued for it, the content itself for the
-- few queued (see migration 0003 and postgres.index_text).
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM (SELECT m.thread_id AS id,
                       (SELECT t.updated_at FROM threads AS t WHERE t.id = m.thread_id) AS updated_at
                  FROM (SELECT x.thread_id
                          FROM message_text AS x
                         WHERE x.text ~* :pattern
                           AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
                        UNION
                        SELECT q.thread_id
                          FROM messages AS q
                         WHERE (q.thread_id, q.id) IN (SELECT thread_id, message_id FROM message_text_pending)
                           AND threadstore_content_text(q.content) ~* :pattern) AS m
                OFFSET 0) AS matched
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: by_platform_reference :many
-- Threads whose platforms[:platform] object has :reference as one of its values
-- (thread_search_platform_values_idx).
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM (SELECT s.thread_id AS id,
                       (SELECT t.updated_at FROM threads AS t WHERE t.id = s.thread_id) AS updated_at
                  FROM thread_search AS s
                 WHERE platform_values @> jsonb_build_object(:platform::text,
                                                            jsonb_build_array(:reference::jsonb))
                OFFSET 0) AS matched
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: by_attributes :many
-- Threads whose attributes hold every key of :wanted with an equal value. Containment finds the
-- candidates on thread_search_attributes_idx; it also accepts a larger object or list where an equal
-- one is asked for, so each value is then compared for equality.
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM (SELECT s.thread_id AS id,
                       (SELECT t.updated_at FROM threads AS t WHERE t.id = s.thread_id) AS updated_at
                  FROM thread_search AS s
                 WHERE attributes @> :wanted::jsonb
                   AND NOT EXISTS (SELECT 1
                                     FROM jsonb_each(:wanted::jsonb) AS w
                                    WHERE attributes -> w.key IS DISTINCT FROM w.value)
                OFFSET 0) AS matched
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: by_platform :many
-- Threads whose platforms[:name] holds every key of :wanted with an equal value, or whose
-- source is named :name and holds them (thread_search_platforms_idx, thread_search_source_idx).
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at
          FROM (SELECT s.thread_id AS id,
                       (SELECT t.updated_at FROM threads AS t WHERE t.id = s.thread_id) AS updated_at
                  FROM thread_search AS s
                 WHERE (platforms @> jsonb_build_object(:name::text, :wanted::jsonb)
                        AND NOT EXISTS (SELECT 1
                                          FROM jsonb_each(:wanted::jsonb) AS w
                                         WHERE platforms -> :name::text -> w.key IS DISTINCT FROM w.value))
                    OR (source @> (:wanted::jsonb || jsonb_build_object('name', :name::text))
                        AND NOT EXISTS (SELECT 1
                                          FROM jsonb_each(:wanted::jsonb) AS w
                                         WHERE source -> w.key IS DISTINCT FROM w.value))
                OFFSET 0) AS matched
         ORDER BY updated_at DESC, id DESC
         LIMIT :limit OFFSET :offset) AS page
 ORDER BY page.updated_at DESC, page.id DESC;

-- name: messages_by_attributes :value
-- Messages whose attributes at the key path :keys equal :value, ordered by thread, then
-- sequence. Containment of the same path and value finds the candidates on
-- messages_attributes_idx.
SELECT coalesce(json_agg((SELECT d.doc
                            FROM message_docs AS d
                           WHERE d.thread_id = page.thread_id AND d.sequence = page.sequence)
                         ORDER BY page.thread_id, page.sequence), '[]'::json)
  FROM (SELECT thread_id, sequence
          FROM (SELECT thread_id, sequence
                  FROM messages
                 WHERE attributes @> threadstore_nested(:keys::text[], :value::jsonb)
                   AND attributes #> :keys::text[] = :value::jsonb
                OFFSET 0) AS matched
         ORDER BY thread_id, sequence
         LIMIT :limit OFFSET :offset) AS page;

-- name: messages_by_platforms :value
-- As messages_by_attributes, on the messages' platforms (messages_platforms_idx).
SELECT coalesce(json_agg((SELECT d.doc
                            FROM message_docs AS d
                           WHERE d.thread_id = page.thread_id AND d.sequence = page.sequence)
                         ORDER BY page.thread_id, page.sequence), '[]'::json)
  FROM (SELECT thread_id, sequence
          FROM (SELECT thread_id, sequence
                  FROM messages
                 WHERE platforms @> threadstore_nested(:keys::text[], :value::jsonb)
                   AND platforms #> :keys::text[] = :value::jsonb
                OFFSET 0) AS matched
         ORDER BY thread_id, sequence
         LIMIT :limit OFFSET :offset) AS page;

-- name: get_thread_by_message_id :one
-- The thread holding a message (messages_id_idx), as threads.get gives it; no row when no
-- thread holds it. An id held by several threads (ids from outside may repeat across threads)
-- names the first of them in id order, as on every backend.
SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT thread_id AS id FROM messages WHERE id = :message_id ORDER BY thread_id LIMIT 1) AS page;

-- name: fulltext :many
-- The messages whose words match :query (tsquery text, threadstore.fulltext.tsquery), at most
-- the :ranked newest (timestamp, then id, then thread id), best ts_rank first by :ranking (the
-- query without its excluded phrases: with them, 1 word and 1,500 excluded ones took 36 s over
-- 300 matches; ts_rank, not ts_rank_cd, whose work grows with the square of the terms: 16 words
-- OR'd ranked 23x slower than one, 3x with ts_rank), normalised by 1 + log of the length, then
-- the newest. The newest matches come from walking the :recent newest indexed messages on
-- message_text_recent_idx (a word in most messages: reading its 800,000 matches in a million
-- messages took seconds; as a subquery, not a CTE of their words, the walk took a third of the
-- time); when fewer than :ranked of those match, from the word's entries in
-- message_text_words_idx instead (the walk's count gates that scan: it runs only then), so
-- both give the same newest matches. Each row also says whether messages wait in
-- message_text_pending: PostgresBackend.search then indexes them and asks again. The queries in
-- FROM, as function scans, get a generic plan (0.13 ms): as a ::tsquery parameter in the
-- joins, or with an optional filter ("$n IS NULL OR ..."), PostgreSQL planned every search
-- anew (+0.2-0.3 ms); hence fulltext_in_threads for the filtered search. Queued messages are
-- left out (their words and text may be those of an edited-away text): search.unindexed
-- matches their current text.
WITH walked AS MATERIALIZED (
    SELECT x.thread_id, x.message_id
      FROM (SELECT x.thread_id, x.message_id, x.stamp, x.words
              FROM message_text AS x
             ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
             LIMIT :recent) AS x, CAST(:query AS tsquery) AS q
     WHERE x.words @@ q
       AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
     ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
     LIMIT :ranked
), newest AS (
    SELECT thread_id, message_id FROM walked WHERE (SELECT count(*) FROM walked) = :ranked
     UNION ALL
    (SELECT x.thread_id, x.message_id
       FROM (SELECT x.thread_id, x.message_id, x.stamp
               FROM CAST(:query AS tsquery) AS q
               JOIN message_text AS x ON x.words @@ q
              WHERE (SELECT count(*) FROM walked) < :ranked
                AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
             OFFSET 0) AS x
      ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
      LIMIT :ranked)
)
SELECT (SELECT EXISTS (SELECT 1 FROM message_text_pending)) AS queued,
       m.thread_id, m.id, m.sequence, m.role, ts_rank(x.words, r, 1)::float8 AS score, x.text
  FROM CAST(:ranking AS tsquery) AS r
 CROSS JOIN newest AS n
  JOIN message_text AS x ON x.thread_id = n.thread_id AND x.message_id = n.message_id
  JOIN messages AS m ON m.thread_id = x.thread_id AND m.id = x.message_id
 ORDER BY score DESC, m.timestamp DESC, m.id DESC, m.thread_id DESC
 LIMIT :limit OFFSET :offset;

-- name: fulltext_in_threads :many
-- fulltext, in the threads whose attributes hold every key of :wanted with an equal value:
-- each match's thread looked up by primary key (OFFSET 0 keeps it so), so the cost follows the
-- matches of the words; as a semi-join the generic plan read every thread the attributes
-- matched through thread_search_attributes_idx (3.0 ms, not 0.5, for one seventh of 10,000).
WITH walked AS MATERIALIZED (
    SELECT x.thread_id, x.message_id
      FROM (SELECT x.thread_id, x.message_id, x.stamp, x.words
              FROM message_text AS x
             ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
             LIMIT :recent) AS x
     CROSS JOIN CAST(:query AS tsquery) AS q
      JOIN LATERAL (SELECT s.attributes FROM thread_search AS s WHERE s.thread_id = x.thread_id OFFSET 0)
           AS s ON s.attributes @> :wanted::jsonb
     WHERE x.words @@ q
       AND NOT EXISTS (SELECT 1
                         FROM jsonb_each(:wanted::jsonb) AS e
                        WHERE s.attributes -> e.key IS DISTINCT FROM e.value)
       AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
     ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
     LIMIT :ranked
), newest AS (
    SELECT thread_id, message_id FROM walked WHERE (SELECT count(*) FROM walked) = :ranked
     UNION ALL
    (SELECT x.thread_id, x.message_id
       FROM (SELECT x.thread_id, x.message_id, x.stamp
               FROM CAST(:query AS tsquery) AS q
               JOIN message_text AS x ON x.words @@ q
               JOIN LATERAL (SELECT s.attributes FROM thread_search AS s WHERE s.thread_id = x.thread_id OFFSET 0)
                    AS s ON s.attributes @> :wanted::jsonb
              WHERE (SELECT count(*) FROM walked) < :ranked
                AND NOT EXISTS (SELECT 1
                                  FROM jsonb_each(:wanted::jsonb) AS e
                                 WHERE s.attributes -> e.key IS DISTINCT FROM e.value)
                AND (x.thread_id, x.message_id) NOT IN (SELECT thread_id, message_id FROM message_text_pending)
             OFFSET 0) AS x
      ORDER BY x.stamp DESC, x.message_id DESC, x.thread_id DESC
      LIMIT :ranked)
)
SELECT (SELECT EXISTS (SELECT 1 FROM message_text_pending)) AS queued,
       m.thread_id, m.id, m.sequence, m.role, ts_rank(x.words, r, 1)::float8 AS score, x.text
  FROM CAST(:ranking AS tsquery) AS r
 CROSS JOIN newest AS n
  JOIN message_text AS x ON x.thread_id = n.thread_id AND x.message_id = n.message_id
  JOIN messages AS m ON m.thread_id = x.thread_id AND m.id = x.message_id
 ORDER BY score DESC, m.timestamp DESC, m.id DESC, m.thread_id DESC
 LIMIT :limit OFFSET :offset;

-- name: queued :value
-- Whether message ids wait in message_text_pending (a search that found nothing asks).
SELECT EXISTS (SELECT 1 FROM message_text_pending);

-- name: unindexed :many
-- The messages queued in message_text_pending (written, not indexed yet), for
-- backends.indexer.unindexed_hits to match on their current text: (thread id, id, sequence, role,
-- timestamp, content text, the thread's attributes as JSON text).
SELECT m.thread_id, m.id, m.sequence, m.role, m.timestamp, threadstore_content_text(m.content),
       t.attributes::text
  FROM messages AS m
  JOIN threads AS t ON t.id = m.thread_id
 WHERE (m.thread_id, m.id) IN (SELECT thread_id, message_id FROM message_text_pending);

-- name: titles :many
-- (id, title) of the threads among :ids (a text array): the titles of search()'s hits.
SELECT id, title FROM threads WHERE id = ANY(:ids::text[]);
