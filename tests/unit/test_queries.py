"""The query registry: placeholder compilation, file errors with file:line, migrations, parity."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadstore import queries
from threadstore.errors import QueryFileError, ThreadStoreError
from threadstore.queries import Kind, Query, load_from, parse_file, split_statements

ORIGIN = "sql/postgres/threads.sql"


def parse(text: str, dialect: str = "postgres") -> dict[str, Query]:
    found = parse_file(text, dialect=dialect, origin=ORIGIN, stem="threads")
    return {q.name: q for q in found}


def one(body: str, dialect: str = "postgres") -> Query:
    return parse(f"-- name: q :many\n{body}", dialect)["threads.q"]


def compiled(body: str, dialect: str = "postgres") -> str:
    return one(body, dialect).sql.removeprefix("/* threads.q */\n")


def load_error(text: str) -> str:
    with pytest.raises(QueryFileError) as info:
        parse(text)
    return str(info.value)


# --- compiling parameters ---------------------------------------------------------------------


def test_a_query_is_named_by_file_and_compiled_for_each_dialect() -> None:
    text = (
        "-- name: get :one\n-- One thread row by id.\n-- None when absent.\n"
        "SELECT id FROM t WHERE id = :id;\n\n"
    )
    pg, lite = parse(text)["threads.get"], parse(text, "sqlite")["threads.get"]
    assert pg == Query(
        name="threads.get",
        kind=Kind.ONE,
        sql="/* threads.get */\nSELECT id FROM t WHERE id = $1",
        params=("id",),
        origin=f"{ORIGIN}:1",
        doc="One thread row by id.\nNone when absent.",
    )
    assert lite.sql == "/* threads.get */\nSELECT id FROM t WHERE id = ?1"


def test_a_repeated_name_gets_the_same_number() -> None:
    q = one("SELECT :b, :a, :b, :c, :a")
    assert q.sql.endswith("SELECT $1, $2, $1, $3, $2")
    assert q.params == ("b", "a", "c")
    assert compiled("SELECT :b, :a, :b", "sqlite") == "SELECT ?1, ?2, ?1"


def test_sqlite_output_has_no_dollar_placeholders() -> None:
    sql = compiled("UPDATE t SET a = :a, b = :b WHERE id = :id", "sqlite")
    assert sql == "UPDATE t SET a = ?1, b = ?2 WHERE id = ?3"
    assert "$" not in sql


@pytest.mark.parametrize(
    "body",
    [
        "SELECT 'a :literal'",
        "SELECT 'it''s :x'",
        "SELECT E'\\' :x'",
        "SELECT e'a\\\\', ':x'",  # E'a\\' ends after the escaped backslash
        'SELECT "odd "" :col" FROM t',
        "SELECT 1 -- :comment",
        "SELECT 1 /* :x */",
        "SELECT 1 /* outer /* :x */ still :y */",
        "SELECT $$ :x ; $$",
        "SELECT $fn$ :x $$ :y $fn$",
        "SELECT a::text, 'x'::jsonb, (a)::int",
        "SELECT arr[1:2], arr[lo:hi], arr[f(x):n], m[1][2:3]",
    ],
)
def test_text_that_holds_no_parameter_is_left_alone(body: str) -> None:
    q = one(body)
    assert q.params == ()
    assert q.sql == f"/* threads.q */\n{body}"


def test_a_parameter_followed_by_a_cast_is_a_parameter() -> None:
    q = one("SELECT * FROM t WHERE attributes @> :wanted::jsonb AND ids = any(:ids::text[])")
    assert q.params == ("wanted", "ids")
    assert q.sql.endswith("@> $1::jsonb AND ids = any($2::text[])")


def test_parameters_next_to_skipped_text_are_still_found() -> None:
    body = "SELECT 'a:b' || :x, \"c:d\", E'\\'' || :y /* :no */, $$:no$$, :z -- :no"
    q = one(body)
    assert q.params == ("x", "y", "z")
    assert q.sql.endswith("SELECT 'a:b' || $1, \"c:d\", E'\\'' || $2 /* :no */, $$:no$$, $3 -- :no")


def test_a_numbered_dollar_is_not_a_dollar_quote() -> None:
    # Were `$1` read as opening a dollar quote, :a would be hidden inside it.
    assert one("SELECT $1, :a").params == ("a",)
    assert one("SELECT a$b$ + :a FROM t").params == ("a",)


def test_array_constructor_parameters_are_found() -> None:
    assert compiled("SELECT ARRAY[:a, :b]") == "SELECT ARRAY[$1, $2]"


def test_final_semicolon_and_surrounding_whitespace_are_stripped() -> None:
    assert compiled("\n  SELECT 1 ;  \n\n") == "SELECT 1"
    assert compiled("SELECT 1; -- trailing note\n") == "SELECT 1"


def test_a_script_is_kept_whole() -> None:
    q = parse("-- name: ddl :script\nCREATE TABLE a (x int);\nCREATE TABLE b (y text);\n")["threads.ddl"]
    assert q.kind is Kind.SCRIPT
    assert q.sql == "/* threads.ddl */\nCREATE TABLE a (x int);\nCREATE TABLE b (y text);"
    assert q.params == ()
    assert q.args({}) == ()


def test_a_file_comment_before_the_first_header_is_allowed() -> None:
    text = "-- Threads.\n/* more\n   notes */\n\n-- name: a :exec\nDELETE FROM t\n-- name: b :value\nSELECT 1"
    found = parse(text)
    assert list(found) == ["threads.a", "threads.b"]
    assert found["threads.a"].sql == "/* threads.a */\nDELETE FROM t"
    assert found["threads.b"].origin == f"{ORIGIN}:7"


def test_every_kind_is_understood() -> None:
    for kind in Kind:
        assert parse(f"-- name: q :{kind.value}\nSELECT 1")["threads.q"].kind is kind


# --- file errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: get :fetch\nSELECT 1", f"{ORIGIN}:1: unknown kind ':fetch'"),
        ("\n-- name: Get :one\nSELECT 1", f"{ORIGIN}:2: bad query name 'Get'"),
        ("-- name: get-thread :one\nSELECT 1", f"{ORIGIN}:1: bad query name 'get-thread'"),
        ("-- name: get\nSELECT 1", f"{ORIGIN}:1: malformed header"),
        ("-- name: get :one :many\nSELECT 1", f"{ORIGIN}:1: malformed header"),
        ("-- name: a :one\n-- doc only\n\n-- name: b :one\nSELECT 1", f"{ORIGIN}:1: query 'a' has no SQL"),
        ("-- name: a :one\nSELECT 1\n-- name: b :exec\n\n  ;\n", f"{ORIGIN}:3: query 'b' has no SQL"),
        ("-- name: a :one\n/* just a comment */", f"{ORIGIN}:1: query 'a' has no SQL"),
        ("SELECT 1;\n-- name: a :one\nSELECT 1", f"{ORIGIN}:1: only comments may come before"),
        ("-- file\n\n  stray\n-- name: a :one\nSELECT 1", f"{ORIGIN}:3: only comments may come before"),
        ("-- name: a :one\nSELECT 1;\nSELECT 2", f"{ORIGIN}:1: query 'a' holds 2 statements"),
        ("-- name: a :one\n-- doc\nSELECT 1\n WHERE x = 'oops\n", f"{ORIGIN}:4: unterminated string literal"),
        ("-- name: a :one\nSELECT E'\\'", f"{ORIGIN}:2: unterminated string literal"),
        ('-- name: a :one\nSELECT "col', f"{ORIGIN}:2: unterminated quoted identifier"),
        ("-- name: a :one\nSELECT 1 /* a /* b */", f"{ORIGIN}:2: unterminated block comment"),
        ("-- name: a :script\nDO $body$ BEGIN\nEND $$", f"{ORIGIN}:2: unterminated dollar-quoted text"),
        ("/* header comment", f"{ORIGIN}:1: unterminated block comment"),
        ("-- name: a :script\nCREATE TABLE t (x int);\nINSERT INTO t\nVALUES (:x)", f"{ORIGIN}:4: parameter"),
        ("-- name: a :one\n\nSELECT :Id", f"{ORIGIN}:3: parameter :Id is not snake_case"),
    ],
)
def test_a_bad_file_names_the_line_and_the_reason(text: str, message: str) -> None:
    assert load_error(text).startswith(message)


def test_a_duplicate_name_names_both_places() -> None:
    message = load_error("-- name: get :one\nSELECT 1\n\n-- name: get :many\nSELECT 2")
    assert message == f"{ORIGIN}:4: duplicate query name 'get', first defined at {ORIGIN}:1"


def test_query_file_error_is_a_threadstore_error_and_a_runtime_error() -> None:
    assert issubclass(QueryFileError, ThreadStoreError)
    assert issubclass(QueryFileError, RuntimeError)


def test_an_unknown_dialect_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown dialect 'mysql'"):
        queries.load("mysql")
    with pytest.raises(ValueError, match="unknown dialect 'mysql'"):
        parse_file("", dialect="mysql", origin=ORIGIN, stem="threads")


# --- Query.args -------------------------------------------------------------------------------


def test_args_follow_placeholder_order() -> None:
    q = one("SELECT :b, :a, :b")
    assert q.args({"a": 1, "b": 2}) == (2, 1)


@pytest.mark.parametrize(
    ("values", "missing", "unexpected"),
    [
        ({"a": 1}, "b", "none"),
        ({"a": 1, "b": 2, "c": 3}, "none", "c"),
        ({"a": 1, "c": 3}, "b", "c"),
        ({"c": 3, "d": 4, "e": 5}, "b, a", "c, d, e"),
    ],
)
def test_args_name_the_query_and_the_missing_and_unexpected_names(
    values: dict[str, int], missing: str, unexpected: str
) -> None:
    q = one("SELECT :b, :a")
    with pytest.raises(TypeError) as info:
        q.args(values)
    assert str(info.value) == (
        f"query 'threads.q': missing parameters: {missing}; unexpected parameters: {unexpected}"
    )


# --- split_statements -------------------------------------------------------------------------


def test_split_statements_splits_at_top_level_semicolons_only() -> None:
    script = """
-- Schema.
CREATE TABLE a (x text DEFAULT 'a;b');   ;
/* ; */ CREATE TABLE "b;c" (y int);
CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
CREATE FUNCTION g() RETURNS text AS $fn$ BEGIN RETURN ';'; END $fn$ LANGUAGE plpgsql;
INSERT INTO a VALUES (E'\\';')
;
-- trailing comment; with a semicolon
"""
    assert split_statements(script) == [
        "-- Schema.\nCREATE TABLE a (x text DEFAULT 'a;b')",
        '/* ; */ CREATE TABLE "b;c" (y int)',
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
        "CREATE FUNCTION g() RETURNS text AS $fn$ BEGIN RETURN ';'; END $fn$ LANGUAGE plpgsql",
        "INSERT INTO a VALUES (E'\\';')",
    ]


def test_split_statements_of_nothing_is_empty() -> None:
    assert split_statements("") == []
    assert split_statements(" ; ;\n-- only a comment;\n") == []


def test_split_statements_reports_unterminated_text() -> None:
    with pytest.raises(QueryFileError, match=r"<script>:2: unterminated string literal"):
        split_statements("SELECT 1;\nSELECT 'oops")


# --- loading folders --------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "sql" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "sql"


def load_folder_error(tmp_path: Path, files: dict[str, str]) -> str:
    with pytest.raises(QueryFileError) as info:
        load_from(write(tmp_path, files), "sqlite")
    return str(info.value)


def test_load_from_reads_queries_and_migrations_in_order(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "sqlite/threads.sql": "-- Threads.\n-- name: get :one\nSELECT :id",
            "sqlite/aliases.sql": "-- name: get :value\nSELECT :alias",
            "sqlite/migrations/0010_ten.sql": "CREATE TABLE j (x int);",
            "sqlite/migrations/0002_two.sql": "CREATE TABLE b (x int); CREATE INDEX bx ON b (x);",
            "sqlite/migrations/0001_init.sql": "-- First.\nCREATE TABLE a (x int);\n",
            **{f"sqlite/migrations/{v:04d}_m{v}.sql": "SELECT 1;" for v in range(3, 10)},
            "sqlite/migrations/README.txt": "not a migration",
            "postgres/threads.sql": "-- name: other :one\nSELECT 1",
        },
    )
    registry = load_from(root, "sqlite")
    assert registry.dialect == "sqlite"
    assert sorted(registry.queries) == ["aliases.get", "threads.get"]
    assert registry["threads.get"].origin == "sql/sqlite/threads.sql:2"
    assert registry["threads.get"].sql == "/* threads.get */\nSELECT ?1"
    assert [m.version for m in registry.migrations] == list(range(1, 11))
    first, second = registry.migrations[:2]
    assert (first.name, first.origin) == ("init", "sql/sqlite/migrations/0001_init.sql")
    assert first.script == "/* migrations.0001_init */\n-- First.\nCREATE TABLE a (x int);\n"
    assert first.statements == ("/* migrations.0001_init */\n-- First.\nCREATE TABLE a (x int)",)
    assert second.statements == (
        "/* migrations.0002_two */\nCREATE TABLE b (x int)",
        "/* migrations.0002_two */\nCREATE INDEX bx ON b (x)",
    )


def test_load_from_allows_a_dialect_without_migrations(tmp_path: Path) -> None:
    registry = load_from(write(tmp_path, {"sqlite/threads.sql": ""}), "sqlite")
    assert registry.queries == {} and registry.migrations == ()


def test_an_unknown_query_is_a_key_error_naming_the_dialect(tmp_path: Path) -> None:
    registry = load_from(write(tmp_path, {"sqlite/threads.sql": ""}), "sqlite")
    with pytest.raises(KeyError, match=r"unknown query 'threads\.nope' for dialect 'sqlite'"):
        registry["threads.nope"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"sqlite/migrations/0001_a.sql": "", "sqlite/migrations/0003_c.sql": ""},
            "sql/sqlite/migrations/0003_c.sql: expected migration version 0002",
        ),
        (
            {"sqlite/migrations/0002_b.sql": ""},
            "sql/sqlite/migrations/0002_b.sql: expected migration version 0001",
        ),
        (
            {"sqlite/migrations/0000_zero.sql": "", "sqlite/migrations/0001_a.sql": ""},
            "sql/sqlite/migrations/0000_zero.sql: expected migration version 0001",
        ),
        (
            {"sqlite/migrations/0001_a.sql": "", "sqlite/migrations/0001_b.sql": ""},
            "sql/sqlite/migrations/0001_b.sql: duplicate migration version 1, "
            "also sql/sqlite/migrations/0001_a.sql",
        ),
        (
            {"sqlite/migrations/1_init.sql": ""},
            "sql/sqlite/migrations/1_init.sql: migration file name must be NNNN_snake_name.sql",
        ),
        (
            {"sqlite/migrations/0001_Init.sql": ""},
            "sql/sqlite/migrations/0001_Init.sql: migration file name must be NNNN_snake_name.sql",
        ),
        (
            {"sqlite/migrations/0001_a.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (:x);"},
            "sql/sqlite/migrations/0001_a.sql:2: parameter :x in a script",
        ),
        (
            {"sqlite/migrations/0001_a.sql": "CREATE TABLE t (x text DEFAULT 'a);"},
            "sql/sqlite/migrations/0001_a.sql:1: unterminated string literal",
        ),
        ({"sqlite/thread-aliases.sql": ""}, "sql/sqlite/thread-aliases.sql: file name must be snake_case"),
        (
            {"sqlite/threads.sql": "-- name: get :one\nSELECT 1\n-- name: get :one\nSELECT 2"},
            "sql/sqlite/threads.sql:3: duplicate query name 'get', first defined at sql/sqlite/threads.sql:1",
        ),
        ({"postgres/threads.sql": ""}, "no SQL folder for dialect 'sqlite'"),
    ],
)
def test_a_bad_folder_names_the_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    assert message in load_folder_error(tmp_path, files)


def test_sql_root_is_the_source_tree_sql_folder_without_packaged_data() -> None:
    package = Path(queries.__file__).parent
    expected = package / "sql" if (package / "sql").is_dir() else package.parent / "sql"
    assert queries.sql_root() == expected


# --- the real SQL files -----------------------------------------------------------------------


# Queries returning rows that a backend builds JSON documents from, in one dialect or both (each
# where that measured faster), so their kinds may differ.
BUILT_BY_BACKEND = {
    "threads.get",
    "threads.list_recent",
    "bounded.get_messages_before",
    "bounded.get_messages_after",
    "bounded.list_threads",
    "bounded.list_threads_by_attributes",
    "search.by_title",
    "search.by_content",
    "search.by_platform_reference",
    "search.by_attributes",
    "search.by_platform",
    "search.get_thread_by_message_id",
    "aliases.get_by_alias",
}


# Parameters one dialect takes beyond the other's: PostgreSQL ranks by the query without its
# excluded phrases (:ranking, since ts_rank's work grows with the query's terms); FTS5's bm25
# weighs only phrases a match holds anyway.
EXTRA_PARAMS = {"search.fulltext": {"ranking"}, "search.fulltext_in_threads": {"ranking"}}


def test_dialects_define_the_same_queries() -> None:
    """Both dialects define the same queries, except those in the file named after a dialect
    (sql/postgres/postgres.sql, sql/sqlite/sqlite.sql): statements only that dialect runs, such
    as SQLite's multi-statement save where PostgreSQL runs one statement. Queries whose rows a
    backend builds the documents from (BUILT_BY_BACKEND) may differ in kind."""
    if not queries.sql_root().is_dir():
        pytest.skip(f"no sql/ folder at {queries.sql_root()}")
    postgres, sqlite = queries.load("postgres"), queries.load("sqlite")

    def shape(registry: queries.Registry) -> dict[str, tuple[str, frozenset[str]]]:
        own = f"{registry.dialect}."
        return {
            name: (
                "rows" if name in BUILT_BY_BACKEND else q.kind.value,
                frozenset(q.params) - EXTRA_PARAMS.get(name, set()),
            )
            for name, q in registry.queries.items()
            if not name.startswith(own)
        }

    pg, lite = shape(postgres), shape(sqlite)
    assert sorted(pg.keys() ^ lite.keys()) == [], "queries defined in one dialect only"
    assert {n: pg[n] for n in pg if pg[n] != lite[n]} == {n: lite[n] for n in pg if pg[n] != lite[n]}
    assert [m.version for m in postgres.migrations] == [m.version for m in sqlite.migrations]


@pytest.mark.parametrize("dialect", queries.DIALECTS)
def test_every_statement_sent_starts_with_its_name(dialect: str) -> None:
    """Server logs and pg_stat_statements name each statement by its first line, a /* */
    comment, which OpenTelemetry's asyncpg instrumentation strips before naming its span."""
    registry = queries.load(dialect)
    for name, query in registry.queries.items():
        assert query.sql.startswith(f"/* {name} */\n"), name
    for migration in registry.migrations:
        label = f"/* migrations.{migration.version:04d}_{migration.name} */\n"
        assert migration.script.startswith(label)
        assert all(statement.startswith(label) for statement in migration.statements)
