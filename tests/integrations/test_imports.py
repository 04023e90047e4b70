"""The frameworks load only with their adapter: ``import threadstore`` (and the OpenAI Agents
session, which meets the SDK's protocol without importing it) loads none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORKS = ("agents", "openai", "langchain_core", "pydantic_ai", "pydantic")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FRAMEWORKS)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "statement",
    [
        "import threadstore",
        "import threadstore.sync, threadstore.testing, threadstore.cli",
        "import threadstore.integrations",
        "from threadstore.integrations.openai_agents import ThreadStoreSession",
    ],
)
def test_no_framework_is_loaded_by(statement: str) -> None:
    assert _loaded_after(statement) == []


@pytest.mark.parametrize(
    ("module", "framework"),
    [
        ("threadstore.integrations.langchain", "langchain_core"),
        ("threadstore.integrations.pydantic_ai", "pydantic_ai"),
    ],
)
def test_an_adapter_loads_its_own_framework_only(module: str, framework: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert framework in loaded
    assert not {"agents", "langchain_core", "pydantic_ai"} - {framework} & set(loaded)
