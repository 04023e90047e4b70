-- Thread reads and deletes. Reads return JSON documents (see the *_docs views).

-- name: get :value
-- One thread with its messages as a JSON document; None when absent.
-- Here and in list, the document is the stored JSON text joined as text (thread_docs' json() and
-- json_object() parse every value again): a thread of 10 messages read in 0.16 ms instead of
-- 0.23 ms, one of 1,000 in 16 ms instead of 19 ms (make bench). The columns hold JSON that
-- threadstore wrote; strings go through json_quote(); times are ISO text without quotes.
SELECT
       '{"id":' || json_quote(t.id) || ',"title":' || json_quote(t.title)
       || ',"attributes":' || t.attributes || ',"platforms":' || t.platforms
       || ',"source":' || coalesce(t.source, 'null') || ',"created_at":"' || t.created_at
       || '","updated_at":"' || t.updated_at || '","messages":[' || coalesce(
         (SELECT group_concat(
                     '{"id":' || json_quote(m.id) || ',"thread_id":' || json_quote(m.thread_id)
                     || ',"sequence":' || m.sequence || ',"turn":' || coalesce(m.turn, 'null')
                     || ',"role":' || json_quote(m.role) || ',"content":' || coalesce(m.content, 'null')
                     || ',"reasoning_content":' || json_quote(m.reasoning_content)
                     || ',"name":' || json_quote(m.name) || ',"tool_call_id":' || json_quote(m.tool_call_id)
                     || ',"tool_calls":' || coalesce(m.tool_calls, 'null')
                     || ',"attributes":' || m.attributes || ',"timestamp":"' || m.timestamp
                     || '","source":' || coalesce(m.source, 'null') || ',"platforms":' || m.platforms
                     || ',"attachments":' || m.attachments || ',"metrics":' || m.metrics
                     || ',"reactions":' || m.reactions || '}', ',') OVER (
                     ORDER BY m.sequence ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM messages AS m
           WHERE m.thread_id = t.id
           LIMIT 1), '') || ']}'
  FROM threads AS t
 WHERE t.id = :thread_id;

-- name: list :value
-- A page of threads, newest updated_at first (id breaks ties), as one JSON array.
-- A NULL :limit means no limit (SQLite spells that LIMIT -1); the ordered windows stand in for
-- the ORDER BY inside an aggregate that SQLite 3.40 lacks. The page is chosen on the index
-- first, so documents are built for its rows only.
SELECT '[' || coalesce(
         (SELECT group_concat(page.doc, ',') OVER (
                     ORDER BY page.updated_at DESC, page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            FROM (SELECT t.id, t.updated_at,
                      '{"id":' || json_quote(t.id) || ',"title":' || json_quote(t.title)
                             || ',"attributes":' || t.attributes || ',"platforms":' || t.platforms
                             || ',"source":' || coalesce(t.source, 'null') || ',"created_at":"' || t.created_at
                             || '","updated_at":"' || t.updated_at || '","messages":[' || coalesce(
                               (SELECT group_concat(
                                           '{"id":' || json_quote(m.id) || ',"thread_id":' || json_quote(m.thread_id)
                                           || ',"sequence":' || m.sequence || ',"turn":' || coalesce(m.turn, 'null')
                                           || ',"role":' || json_quote(m.role) || ',"content":' || coalesce(m.content, 'null')
                                           || ',"reasoning_content":' || json_quote(m.reasoning_content)
                                           || ',"name":' || json_quote(m.name) || ',"tool_call_id":' || json_quote(m.tool_call_id)
                                           || ',"tool_calls":' || coalesce(m.tool_calls, 'null')
                                           || ',"attributes":' || m.attributes || ',"timestamp":"' || m.timestamp
                                           || '","source":' || coalesce(m.source, 'null') || ',"platforms":' || m.platforms
                                           || ',"attachments":' || m.attachments || ',"metrics":' || m.metrics
                                           || ',"reactions":' || m.reactions || '}', ',') OVER (
                                           ORDER BY m.sequence ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                                  FROM messages AS m
                                 WHERE m.thread_id = t.id
                                 LIMIT 1), '') || ']}' AS doc
                    FROM (SELECT *
                            FROM threads
                           ORDER BY updated_at DESC, id DESC
                           LIMIT coalesce(:limit, -1) OFFSET :offset) AS t) AS page
           LIMIT 1), '') || ']';

-- name: create_if_absent :exec
-- Stores an empty thread unless one with that id exists.
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at)
VALUES (:thread_id, :title, :attributes, :platforms, :source, :created_at, :updated_at)
ON CONFLICT (id) DO NOTHING;

-- name: delete :rowcount
-- Messages and aliases go with it (ON DELETE CASCADE; foreign_keys is switched on at connect).
DELETE FROM threads WHERE id = :thread_id;

-- name: delete_many :rowcount
-- :ids is a JSON array of thread ids.
DELETE FROM threads WHERE id IN (SELECT value FROM json_each(:ids));
