-- Attachment references: which stored files the messages point at, for the FileStore's clean-up
-- after a failed save and for collect_garbage (threadstore/files.py). An attachment names its
-- file by storage_path and by file_id; both count. These read every message that has
-- attachments (maintenance reads, never on a save's path; an index would need a schema change).
-- A stored attachments value that is not an array is read as an empty one.

-- name: references :many
-- Every storage_path and file_id held by a stored message's attachments.
SELECT DISTINCT r.ref
  FROM messages AS m
 CROSS JOIN LATERAL jsonb_array_elements(
           CASE jsonb_typeof(m.attachments) WHEN 'array' THEN m.attachments ELSE '[]'::jsonb END) AS a(doc)
 CROSS JOIN LATERAL (VALUES (a.doc ->> 'storage_path'), (a.doc ->> 'file_id')) AS r(ref)
 WHERE m.attachments <> '[]'::jsonb AND r.ref IS NOT NULL;

-- name: references_among :many
-- Those of :refs (a text array) that a stored message's attachment holds.
SELECT DISTINCT r.ref
  FROM messages AS m
 CROSS JOIN LATERAL jsonb_array_elements(
           CASE jsonb_typeof(m.attachments) WHEN 'array' THEN m.attachments ELSE '[]'::jsonb END) AS a(doc)
 CROSS JOIN LATERAL (VALUES (a.doc ->> 'storage_path'), (a.doc ->> 'file_id')) AS r(ref)
 WHERE m.attachments <> '[]'::jsonb AND r.ref = any(:refs::text[]);
