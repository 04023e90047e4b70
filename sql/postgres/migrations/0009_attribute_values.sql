-- threadstore schema, version 9 (SQLite: an index of the threads' string and number attributes,
-- for find_by_attributes and list_threads(attributes=)). PostgreSQL has answered those lookups
-- from thread_search_attributes_idx (GIN, jsonb_path_ops) since version 3, so nothing changes
-- here: the version is kept so that a schema version means the same on both databases, and a
-- script needs one statement.
SELECT 1;
