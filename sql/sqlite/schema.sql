-- The migration ledger: which numbered files under migrations/ have run.

-- name: create_ledger :exec
CREATE TABLE IF NOT EXISTS threadstore_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL
) STRICT;

-- name: versions :many
-- Applied migrations, oldest first.
SELECT version, name FROM threadstore_migrations ORDER BY version;

-- name: record :exec
INSERT INTO threadstore_migrations (version, name, applied_at) VALUES (:version, :name, :applied_at);

-- name: ledger_exists :value
-- Whether the ledger exists (a database never migrated has none); reading it changes nothing.
SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'threadstore_migrations');

-- name: narrator_database :value
-- Whether this is a slide-narrator database: its threads and messages tables with narrator's
-- columns, without the ledger and without threadstore's own column on threads (see
-- threadstore.adopt). Tables of the same names with other columns are another application's.
SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'threadstore_migrations')
   AND (SELECT count(*) FROM pragma_table_info('threads')
         WHERE name IN ('id', 'title', 'attributes', 'platforms', 'created_at', 'updated_at')) = 6
   AND (SELECT count(*) FROM pragma_table_info('messages')
         WHERE name IN ('id', 'thread_id', 'sequence', 'role', 'content', 'attributes')) = 6
   AND NOT EXISTS (SELECT 1 FROM pragma_table_info('threads') WHERE name = 'last_sequence');

-- name: other_tables :value
-- Whether tables named threads or messages exist without the ledger (asked after
-- narrator_database): another application's, which the migrations must not touch.
SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'threadstore_migrations')
   AND EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name IN ('threads', 'messages'));
