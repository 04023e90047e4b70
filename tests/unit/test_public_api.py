"""Everything the README and docs/ name is importable from ``threadstore`` and listed in its
``__all__``, and everything in ``__all__`` is named there: the documents and the package stay in
step. ``import threadstore`` stays cheap (no asyncio) however much it exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import threadstore

ROOT = Path(__file__).resolve().parents[2]


def documents() -> dict[str, str]:
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {str(path.relative_to(ROOT)): path.read_text() for path in paths if path.is_file()}


def named(text: str) -> set[str]:
    """The identifiers in `code spans` and ```code blocks``` of a Markdown text."""
    code = re.findall(r"```.*?```|`[^`\n]+`", text, re.DOTALL)
    return {word for span in code for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def defined_classes() -> dict[str, str]:
    """Every public class defined in a threadstore module: name -> module."""
    classes: dict[str, str] = {}
    for info in pkgutil.walk_packages(threadstore.__path__, "threadstore."):
        if info.name in ("threadstore.__main__", "threadstore.quickstart"):
            continue  # running programs, not libraries
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == info.name and not name.startswith("_"):
                classes.setdefault(name, info.name)
    return classes


def test_every_class_the_documents_name_is_exported() -> None:
    classes = defined_classes()
    missing = {}
    for path, text in documents().items():
        for name in sorted(named(text) & classes.keys()):
            # The framework adapters import from their own modules, as the documents show:
            # exporting them from threadstore would load their frameworks with it.
            if name not in threadstore.__all__ and not classes[name].startswith("threadstore.integrations."):
                missing[name] = f"{path} names it; defined in {classes[name]}"
    assert not missing, f"named in the documents but not in threadstore.__all__: {missing}"


def test_everything_exported_is_importable_and_documented() -> None:
    names = set().union(*(named(text) for text in documents().values()))
    for name in threadstore.__all__:
        assert getattr(threadstore, name) is not None
        assert name in names, f"threadstore.{name} is exported but no document names it"
    assert sorted(threadstore.__all__) == threadstore.__all__
    namespace: dict[str, object] = {}
    exec("from threadstore import *", namespace)
    assert set(threadstore.__all__) <= namespace.keys()


def test_code_imports_in_the_documents_resolve() -> None:
    for path, text in documents().items():
        for names in re.findall(r"^from threadstore import (.+)$", text, re.M):
            for name in (n.strip() for n in names.strip("()").split(",")):
                assert hasattr(threadstore, name), f"{path}: from threadstore import {name}"


def test_import_threadstore_stays_cheap() -> None:
    code = (
        "import sys, threadstore\n"
        "print(sorted(m for m in ('asyncio', 'importlib.metadata') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # FileStore, collect_garbage and __version__ load on use


def test_lazy_names_are_the_real_objects() -> None:
    from threadstore.files import FileStore, collect_garbage
    from threadstore.version import version

    assert threadstore.FileStore is FileStore
    assert threadstore.collect_garbage is collect_garbage
    assert threadstore.__version__ == version()
