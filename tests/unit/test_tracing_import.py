"""OpenTelemetry is optional: ``import threadstore`` loads none of it, installed or not, and
without it the store works with its methods unwrapped (a fresh interpreter each)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Makes OpenTelemetry absent, as in an environment without the otel extra.
ABSENT = """
import importlib.abc, sys

class NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoOpenTelemetry())
"""

LOADED = "sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')"


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_threadstore_loads_no_opentelemetry_module_when_installed() -> None:
    out = _python(f"""
        import sys
        import threadstore, threadstore.sync, threadstore.tracing
        print({LOADED})
        print(threadstore.tracing.INSTALLED)  # installed here: the test extra
    """)
    assert out.split("\n")[:2] == ["[]", "True"]


def test_without_opentelemetry_the_store_works_unwrapped_and_loads_none_of_it(tmp_path: object) -> None:
    out = _python(f"""
        {textwrap.indent(ABSENT, " " * 8).strip()}
        import asyncio
        from threadstore import Message, Thread, ThreadStore, tracing

        async def main(url):
            async with ThreadStore(url) as store:
                thread = Thread(id="t")
                thread.add_message(Message(role="user", content="hello"))
                await store.save(thread)
                return len((await store.get("t")).messages)

        print(asyncio.run(main(None)), asyncio.run(main("sqlite:///{tmp_path}/t.db")))
        print({LOADED}, tracing.INSTALLED, hasattr(ThreadStore.save, "__wrapped__"))
    """)
    assert out.split("\n")[:2] == ["1 1", "[] False False"]


def test_the_global_sdk_is_used_once_set_even_after_the_first_operations(tmp_path: object) -> None:
    """Operations before the application sets its providers cost no span (none is recorded);
    those after it are traced and measured."""
    out = _python(f"""
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from threadstore import ThreadStore

        async def main():
            async with ThreadStore("sqlite:///{tmp_path}/t.db") as store:
                await store.get("before")
                spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(spans))
                trace.set_tracer_provider(provider)
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                await store.get("after")
                print(sorted(s.name for s in spans.get_finished_spans()))
                data = reader.get_metrics_data()
                names = {{m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}}
                print(sorted(n for n in names if n.startswith("db.client.")))

        asyncio.run(main())
    """)
    assert out.split("\n")[:2] == [
        "['threads.get', 'threadstore get']",
        "['db.client.connection.count', 'db.client.connection.max', 'db.client.connection.pending_requests', "
        "'db.client.connection.timeouts', 'db.client.operation.duration']",
    ]
