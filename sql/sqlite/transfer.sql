-- Export, import and copy between stores: threads read in id order, whole, with their aliases.
-- Writing them as they are is postgres.import_threads (one statement, then its words indexed in
-- its transaction) / sqlite.import_* (a transaction, indexed in it too).

-- name: export_threads :many
-- Up to :limit threads with ids above :after (NULL: from the first), in id order: the thread's
-- document and its aliases as a JSON array of {alias, created_at}, oldest first (the ordered
-- window stands in for the ORDER BY inside an aggregate that SQLite 3.40 lacks).
SELECT d.doc,
       coalesce((SELECT json_group_array(json(json_object('alias', a.alias, 'created_at', a.created_at)))
                        OVER (ORDER BY a.created_at, a.alias
                              ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                   FROM thread_aliases AS a
                  WHERE a.thread_id = p.id
                  LIMIT 1), '[]') AS aliases
  FROM (SELECT id FROM threads WHERE id > coalesce(:after, '') ORDER BY id LIMIT :limit) AS p
  JOIN thread_docs AS d ON d.id = p.id
 ORDER BY p.id;

-- name: existing_ids :many
-- Which of the thread ids :ids (a JSON array) are stored.
SELECT id FROM threads WHERE id IN (SELECT value FROM json_each(:ids));
