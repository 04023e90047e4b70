-- Attachment references: which stored files the messages point at, for the FileStore's clean-up
-- after a failed save and for collect_garbage (threadstore/files.py). An attachment names its
-- file by storage_path and by file_id; both count. These read every message that has
-- attachments (maintenance reads, never on a save's path; an index would need a schema change).
-- A stored attachments value that is not an array is read as an empty one.
-- SQLite's json_each gives a string element as bare text, which ->> would reject as malformed
-- JSON, so only object elements are looked into (PostgreSQL's ->> gives NULL for non-objects).

-- name: references :many
-- Every storage_path and file_id held by a stored message's attachments.
SELECT DISTINCT r.value
  FROM messages AS m,
       json_each(CASE json_type(m.attachments) WHEN 'array' THEN m.attachments ELSE '[]' END) AS a,
       json_each(CASE a.type WHEN 'object'
                     THEN json_array(a.value ->> '$.storage_path', a.value ->> '$.file_id')
                     ELSE '[]' END) AS r
 WHERE m.attachments <> '[]' AND r.value IS NOT NULL;

-- name: references_among :many
-- Those of :refs (a JSON array of strings) that a stored message's attachment holds.
SELECT DISTINCT r.value
  FROM messages AS m,
       json_each(CASE json_type(m.attachments) WHEN 'array' THEN m.attachments ELSE '[]' END) AS a,
       json_each(CASE a.type WHEN 'object'
                     THEN json_array(a.value ->> '$.storage_path', a.value ->> '$.file_id')
                     ELSE '[]' END) AS r
 WHERE m.attachments <> '[]' AND r.value IN (SELECT value FROM json_each(:refs));
