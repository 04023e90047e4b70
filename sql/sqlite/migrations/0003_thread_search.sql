-- threadstore schema, version 3. On PostgreSQL it moves the searched thread fields into
-- thread_search, off the write path of appends; SQLite has no such indexes, so nothing changes.
-- It exists so that one version number names the schema on both.
SELECT 1;
