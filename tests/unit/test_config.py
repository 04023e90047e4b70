"""Configuration from the environment: URL, the DB_* variables of each prefix, settings, errors."""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote, urlsplit

import pytest

from threadstore import ConfigurationError, ThreadStore
from threadstore.config import PREFIXES, Settings, SettingsKwargs, configure, parse_url

PG = {
    "DB_TYPE": "postgresql",
    "DB_HOST": "db.internal",
    "DB_PORT": "6543",
    "DB_NAME": "tyler",
    "DB_USER": "tyler_user",
    "DB_PASSWORD": "secret",
}


def env(prefix: str, **values: str) -> dict[str, str]:
    return {f"{prefix}{key}": value for key, value in values.items()}


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any variable this library reads."""
    import os

    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


def test_nothing_set_means_memory_with_the_default_settings() -> None:
    config = configure(None, {})
    assert config.backend == "memory" and config.url is None
    assert config.settings == Settings()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_prefix_configures_postgres(prefix: str) -> None:
    config = configure(None, env(prefix, **PG))
    assert config.backend == "postgres"
    assert config.masked_url == "postgresql+asyncpg://tyler_user:***@db.internal:6543/tyler"
    parts = urlsplit(config.dsn)
    assert (parts.hostname, parts.port, parts.path, parts.username, parts.password) == (
        "db.internal",
        6543,
        "/tyler",
        "tyler_user",
        "secret",
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_prefix_configures_sqlite(prefix: str) -> None:
    config = configure(None, env(prefix, DB_TYPE="sqlite", DB_PATH="/path/to/db.sqlite"))
    assert (config.backend, config.path) == ("sqlite", "/path/to/db.sqlite")
    assert config.url == "sqlite+aiosqlite:////path/to/db.sqlite"


@pytest.mark.parametrize("value", ["postgres", "PostgreSQL", " postgresql "])
def test_the_type_accepts_both_postgres_spellings_in_any_case(value: str) -> None:
    assert configure(None, env("TYLER_", **{**PG, "DB_TYPE": value})).backend == "postgres"


def test_memory_type_and_defaults_port_and_password() -> None:
    assert configure(None, {"NARRATOR_DB_TYPE": "memory"}).backend == "memory"
    config = configure(None, env("TYLER_", DB_TYPE="postgresql", DB_HOST="h", DB_NAME="d", DB_USER="u"))
    assert config.url == "postgresql+asyncpg://u@h:5432/d" and config.password is None


def test_the_url_variable_wins_over_the_type_and_an_argument_over_both() -> None:
    environ = {"THREADSTORE_DATABASE_URL": "sqlite:///from-url.db", **env("THREADSTORE_", **PG)}
    assert configure(None, environ).path == "from-url.db"
    assert configure("sqlite:///argument.db", environ).path == "argument.db"


def test_prefixes_are_tried_in_order_threadstore_tyler_narrator() -> None:
    tyler = env("TYLER_", DB_TYPE="sqlite", DB_PATH="tyler.db")
    narrator = env("NARRATOR_", DB_TYPE="sqlite", DB_PATH="narrator.db")
    mine = env("THREADSTORE_", DB_TYPE="sqlite", DB_PATH="mine.db")
    assert configure(None, {**narrator, **tyler, **mine}).path == "mine.db"
    assert configure(None, {**narrator, **tyler}).path == "tyler.db"
    assert configure(None, narrator).path == "narrator.db"


def test_connection_settings_never_mix_prefixes() -> None:
    """Another application's password is not sent to this one's host."""
    environ = {
        **env("THREADSTORE_", DB_TYPE="postgresql", DB_HOST="mine", DB_NAME="d"),
        **env("TYLER_", **PG),
    }
    with pytest.raises(ConfigurationError, match="THREADSTORE_DB_USER") as raised:
        configure(None, environ)
    assert "TYLER" not in str(raised.value)
    environ["THREADSTORE_DB_USER"] = "me"
    config = configure(None, environ)
    assert config.url == "postgresql+asyncpg://me@mine:5432/d"


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"DB_TYPE": "postgresql"}, "TYLER_DB_HOST, TYLER_DB_NAME, TYLER_DB_USER"),
        ({"DB_TYPE": "postgresql", "DB_HOST": "h", "DB_USER": "u"}, "TYLER_DB_NAME"),
        ({"DB_TYPE": "postgresql", "DB_HOST": "h", "DB_NAME": " ", "DB_USER": "u"}, "TYLER_DB_NAME"),
        ({"DB_TYPE": "sqlite"}, "TYLER_DB_PATH"),
    ],
)
def test_missing_required_variables_are_named(values: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=f"needs {missing} to be set"):
        configure(None, env("TYLER_", **values))


def test_an_unknown_type_or_port_is_an_error_naming_the_variable() -> None:
    expected = "NARRATOR_DB_TYPE must be memory, sqlite or postgresql, got 'mysql'"
    with pytest.raises(ConfigurationError, match=expected):
        configure(None, {"NARRATOR_DB_TYPE": "mysql"})
    for port in ("abc", "0", "70000", "-1"):
        with pytest.raises(ConfigurationError, match="TYLER_DB_PORT must be a port number"):
            configure(None, env("TYLER_", **{**PG, "DB_PORT": port}))


@pytest.mark.parametrize("password", ["p@ss/w:rd%41", "a b?c#d&e=f", "ünï©ode", "::@@//"])
def test_user_and_password_are_url_escaped(password: str) -> None:
    config = configure(None, env("TYLER_", **{**PG, "DB_USER": "me@corp", "DB_PASSWORD": password}))
    parts = urlsplit(config.dsn)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == ("me@corp", password)
    assert parts.hostname == "db.internal" and parts.port == 6543
    assert password not in str(config.masked_url) and password not in repr(config)
    assert config.scrub(f"failed for {password}") == "failed for ***"


def test_an_ipv6_host_and_a_socket_directory_make_valid_urls() -> None:
    v6 = configure(None, env("TYLER_", **{**PG, "DB_HOST": "::1"}))
    assert urlsplit(v6.dsn).hostname == "::1" and urlsplit(v6.dsn).port == 6543
    socket = configure(None, env("TYLER_", **{**PG, "DB_HOST": "/var/run/postgresql"}))
    assert "host=%2Fvar%2Frun%2Fpostgresql" in str(socket.dsn) and "port=6543" in str(socket.dsn)


# --- tuning settings ---------------------------------------------------------------------------

ALL = {
    "DB_POOL_SIZE": "3",
    "DB_MAX_OVERFLOW": "0",
    "DB_POOL_TIMEOUT": "2.5",
    "DB_POOL_RECYCLE": "300",
    "DB_COMMAND_TIMEOUT": "10",
    "DB_STATEMENT_CACHE_SIZE": "0",
    "DB_ECHO": "true",
    "DB_CONNECT_TIMEOUT": "4",
    "DB_LIVENESS_INTERVAL": "2.5",
}
EXPECTED = Settings(
    pool_size=3,
    max_overflow=0,
    pool_timeout=2.5,
    pool_recycle=300.0,
    command_timeout=10.0,
    statement_cache_size=0,
    echo=True,
    connect_timeout=4.0,
    liveness_interval=2.5,
)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_prefix_sets_every_setting(prefix: str) -> None:
    assert configure(None, env(prefix, **ALL)).settings == EXPECTED
    # ... with an explicit URL too: pool settings configure whatever database is named
    assert configure("postgresql://h/d", env(prefix, **ALL)).settings == EXPECTED


def test_settings_are_read_one_by_one_from_the_first_prefix_that_sets_them() -> None:
    environ = {
        "NARRATOR_DB_POOL_SIZE": "7",
        "NARRATOR_DB_ECHO": "yes",
        "TYLER_DB_POOL_SIZE": "8",
        "THREADSTORE_DB_POOL_TIMEOUT": "1",
    }
    settings = configure(None, environ).settings
    assert (settings.pool_size, settings.echo, settings.pool_timeout) == (8, True, 1.0)


def test_keyword_arguments_win_over_the_environment() -> None:
    environ = env("THREADSTORE_", **ALL)
    settings = configure(None, environ, pool_size=9, echo=False, pool_recycle=None).settings
    assert (settings.pool_size, settings.echo, settings.pool_recycle) == (9, False, 300.0)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("On", True), ("no", False), ("FALSE", False)])
def test_echo_reads_the_usual_boolean_words(text: str, value: bool) -> None:
    assert configure(None, {"TYLER_DB_ECHO": text}).settings.echo is value


@pytest.mark.parametrize(
    ("variable", "text", "rule"),
    [
        ("DB_POOL_SIZE", "abc", "an integer >= 1"),
        ("DB_POOL_SIZE", "0", "an integer >= 1"),
        ("DB_POOL_SIZE", "2.5", "an integer >= 1"),
        ("DB_MAX_OVERFLOW", "-1", "an integer >= 0"),
        ("DB_POOL_TIMEOUT", "0", "a number of seconds > 0"),
        ("DB_POOL_TIMEOUT", "-3", "a number of seconds > 0"),
        ("DB_POOL_RECYCLE", "nan", "a number of seconds > 0"),
        ("DB_COMMAND_TIMEOUT", "inf", "a number of seconds > 0"),
        ("DB_STATEMENT_CACHE_SIZE", "-5", "an integer >= 0"),
        ("DB_ECHO", "maybe", "true or false"),
        ("DB_CONNECT_TIMEOUT", "-1", "a number of seconds > 0, or 0 for no limit"),
        ("DB_LIVENESS_INTERVAL", "never", "a number of seconds > 0, or 0 for no limit"),
        ("DB_LIVENESS_INTERVAL", "inf", "a number of seconds > 0, or 0 for no limit"),
    ],
)
def test_an_invalid_value_is_an_error_naming_the_variable(variable: str, text: str, rule: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        configure(None, {f"TYLER_{variable}": text})
    assert str(raised.value) == f"TYLER_{variable} must be {rule}, got {text!r}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pool_size", "5"),
        ("pool_size", True),
        ("pool_size", 0),
        ("max_overflow", -1),
        ("pool_timeout", 0),
        ("command_timeout", float("nan")),
        ("statement_cache_size", 1.0),
        ("echo", 1),
        ("connect_timeout", -1),
        ("liveness_interval", "10"),
    ],
)
def test_an_invalid_keyword_is_an_error_naming_it(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"^{name} must be .*, got {value!r}$"):
        configure(None, {}, **{name: value})


def test_the_default_bounds_hold_until_turned_off_with_0_or_none() -> None:
    default = configure(None, {}).settings
    assert (default.connect_timeout, default.liveness_interval) == (10.0, 10.0)
    for text in ("0", "none", "Off"):
        environ = {"THREADSTORE_DB_CONNECT_TIMEOUT": text, "TYLER_DB_LIVENESS_INTERVAL": text}
        settings = configure(None, environ).settings
        assert (settings.connect_timeout, settings.liveness_interval) == (None, None)
    settings = configure(
        None, {"THREADSTORE_DB_LIVENESS_INTERVAL": "3"}, liveness_interval=0, connect_timeout=None
    ).settings  # None: not given, as for every keyword
    assert (settings.connect_timeout, settings.liveness_interval) == (10.0, None)


def test_blank_variables_count_as_unset() -> None:
    assert configure(
        None, {"THREADSTORE_DATABASE_URL": " ", "TYLER_DB_TYPE": "", "TYLER_DB_POOL_SIZE": ""}
    ) == configure(None, {})


def test_a_store_reads_the_process_environment(clean_environ: pytest.MonkeyPatch, tmp_path: object) -> None:
    clean_environ.setenv("TYLER_DB_TYPE", "sqlite")
    clean_environ.setenv("TYLER_DB_PATH", f"{tmp_path}/env.db")
    store = ThreadStore()
    assert store.backend == "sqlite" and store.database_url == f"sqlite+aiosqlite:///{tmp_path}/env.db"
    clean_environ.setenv("TYLER_DB_POOL_SIZE", "many")
    with pytest.raises(ConfigurationError, match="TYLER_DB_POOL_SIZE"):
        ThreadStore()
    clean_environ.delenv("TYLER_DB_POOL_SIZE")
    with pytest.raises(ConfigurationError, match="pool_timeout"):
        ThreadStore("sqlite:///x.db", pool_timeout=-1)


@pytest.mark.parametrize("url", ["sqlite:///a?b.db", "sqlite+aiosqlite:///x.db?mode=ro", "sqlite:///x.db?"])
def test_sqlite_url_query_parameters_are_refused_not_dropped(url: str) -> None:
    """A '?' silently changed the file name ("a?b.db" opened "a") and ?mode=ro was dropped."""
    with pytest.raises(ConfigurationError, match="SQLite URLs take none"):
        parse_url(url)


def test_a_sqlite_path_is_percent_decoded() -> None:
    assert parse_url("sqlite:///a%3Fb.db").path == "a?b.db"
    assert parse_url("sqlite:////tmp/my%20db.sqlite").path == "/tmp/my db.sqlite"


def test_settings_kwargs_match_settings() -> None:
    """The keyword arguments of ThreadStore(...) and create(...) are exactly the Settings."""
    assert SettingsKwargs.__annotations__.keys() == {f.name for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize("make", ["init", "create"])
def test_an_unknown_setting_is_a_type_error_naming_it(make: str) -> None:
    with pytest.raises(
        TypeError, match=r"ThreadStore\.(__init__|create)\(\) got an unexpected keyword argument 'pool'"
    ):
        if make == "init":
            ThreadStore(pool=3)  # type: ignore[call-arg]
        else:
            ThreadStore.create(pool=3)  # type: ignore[call-arg]  # at once, not when awaited


def test_schema_comes_from_the_keyword_the_url_or_the_environment() -> None:
    url = "postgresql://h/d"
    assert configure(url, {}).settings.schema is None
    assert configure(url, {"THREADSTORE_DB_SCHEMA": "env_s"}).settings.schema == "env_s"
    from_url = configure(url + "?schema=url_s&sslmode=disable", {"THREADSTORE_DB_SCHEMA": "env_s"})
    assert from_url.settings.schema == "url_s"
    assert urlsplit(from_url.dsn).query == "sslmode=disable"  # asyncpg never sees ?schema=
    assert configure(url + "?schema=url_s", {}, schema="App_1").settings.schema == "App_1"


@pytest.mark.parametrize(
    "name", ["", "1st", "a-b", 'a"b', "a,public", "a b", "pg_temp", "x" * 64, "é", "a;drop"]
)
def test_a_bad_schema_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        configure("postgresql://h/d", {}, schema=name)
    with pytest.raises(ConfigurationError, match="THREADSTORE_DB_SCHEMA"):
        configure("postgresql://h/d", {"THREADSTORE_DB_SCHEMA": name or "-"})


def test_schema_is_for_postgresql_only_and_not_beside_search_path() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        configure("sqlite:///x.db", {}, schema="s")
    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        configure(None, {"THREADSTORE_DB_SCHEMA": "s"})
    with pytest.raises(ConfigurationError, match="search_path"):
        configure("postgresql://h/d?search_path=app", {}, schema="s")
    with pytest.raises(ConfigurationError, match=r"\?schema="):
        configure("postgresql://h/d?schema=a%2Cpublic", {})
