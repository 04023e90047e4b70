-- The migration ledger: which numbered files under migrations/ have run.

-- name: create_ledger :exec
CREATE TABLE IF NOT EXISTS threadstore_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL
);

-- name: versions :many
-- Applied migrations, oldest first.
SELECT version, name FROM threadstore_migrations ORDER BY version;

-- name: record :exec
INSERT INTO threadstore_migrations (version, name, applied_at) VALUES (:version, :name, :applied_at);

-- name: ledger_exists :value
-- Whether the ledger exists (a database never migrated has none); reading it changes nothing.
SELECT to_regclass('threadstore_migrations') IS NOT NULL;

-- name: narrator_database :value
-- Whether this is a slide-narrator database: its threads and messages tables with narrator's
-- columns, without the ledger and without threadstore's own column on threads (see
-- threadstore.adopt). Tables of the same names with other columns are another application's.
SELECT to_regclass('threadstore_migrations') IS NULL
   AND (SELECT count(*) FROM pg_attribute
         WHERE attrelid = to_regclass('threads') AND NOT attisdropped
           AND attname IN ('id', 'title', 'attributes', 'platforms', 'created_at', 'updated_at')) = 6
   AND (SELECT count(*) FROM pg_attribute
         WHERE attrelid = to_regclass('messages') AND NOT attisdropped
           AND attname IN ('id', 'thread_id', 'sequence', 'role', 'content', 'attributes')) = 6
   AND NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = to_regclass('threads') AND attname = 'last_sequence'
                      AND NOT attisdropped);

-- name: other_tables :value
-- Whether tables named threads or messages exist without the ledger (asked after
-- narrator_database): another application's, which the migrations must not touch.
SELECT to_regclass('threadstore_migrations') IS NULL
   AND (to_regclass('threads') IS NOT NULL OR to_regclass('messages') IS NOT NULL);
