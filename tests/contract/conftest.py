"""Contract-suite helpers: ``bug_on`` marks a known library bug on some backends only.

``@pytest.mark.bug_on("postgres", reason="BUG: ...")`` turns into a strict xfail on the listed
backend params (the ``store_url``/``shared_url`` ids: memory, sqlite_file, sqlite_memory,
postgres) and leaves the test a plain test on the others, so a fix shows up as XPASS (a failure
under strict) and the mark must then be removed. Every test still asserts the same behaviour on
every backend; the mark only records where that behaviour is known to be broken today.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bug_on(*backends, reason): strict xfail on those backends (a known bug)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        values = callspec.params.values() if callspec is not None else ()
        params = {value for value in values if isinstance(value, str)}
        for mark in item.iter_markers("bug_on"):
            if params & set(mark.args):
                item.add_marker(pytest.mark.xfail(reason=mark.kwargs["reason"], strict=True))
