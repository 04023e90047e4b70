"""Child processes of the reliability tests: ``python -m tests.reliability.workers JOB JSON``.

Each worker opens its own store, prints ``ready``, waits for ``go`` on stdin (so the parent can
start several at the same instant), runs its job and prints one JSON line with what happened.
It never raises: every error is reported with its type and message, for the parent to judge.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from threadstore import Message, Thread, ThreadStore


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go' on stdin")


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


async def append_job(
    url: str, thread_id: str, worker: int, tasks: int, per_task: int, load_every: int
) -> dict[str, Any]:
    """``tasks`` tasks each add ``per_task`` messages to one thread: every ``load_every``-th
    through save() of a freshly loaded copy, the others through append()."""
    store = await ThreadStore.create(url)
    _wait_for_go()
    errors: list[dict[str, str]] = []
    written: list[str] = []

    async def task(number: int) -> None:
        for i in range(per_task):
            message = Message(role="user", content=f"w{worker}-t{number}-{i:05d}")
            try:
                if load_every and i % load_every == 0:
                    copy = await store.get(thread_id)
                    assert copy is not None, "the thread vanished"
                    copy.add_message(message)
                    await store.save(copy)
                else:
                    await store.append(thread_id, message)
                written.append(message.content)  # type: ignore[arg-type]
            except Exception as exc:  # reported to the parent, which fails on any
                errors.append(_error(exc))

    started = time.perf_counter()
    await asyncio.gather(*[task(n) for n in range(tasks)])
    elapsed = time.perf_counter() - started
    await store.close()
    return {"written": written, "errors": errors, "seconds": elapsed}


async def create_job(url: str) -> dict[str, Any]:
    """create() (which migrates) on a database, at the parent's signal."""
    import threadstore.backends.postgres
    import threadstore.backends.sqlite  # noqa: F401 - imported now, so both start at once

    _wait_for_go()
    try:
        store = await ThreadStore.create(url)
    except Exception as exc:
        return {"errors": [_error(exc)]}
    try:
        return {"errors": [], "migrate_again": await store.migrate()}
    finally:
        await store.close()


async def full_disk_job(url: str, thread_id: str) -> dict[str, Any]:
    """Under a file size limit the parent set (a full disk): save a thread too big for it, then
    read what was stored before."""
    store = await ThreadStore.create(url)
    _wait_for_go()
    result: dict[str, Any] = {"errors": []}
    big = Thread(id="too-big")
    for n in range(20):
        big.add_message(Message(role="user", content=f"{n} " + "x" * 100_000))
    try:
        await store.save(big)
    except Exception as exc:
        result["errors"].append(_error(exc))
    try:
        kept = await store.get(thread_id)
        result["kept"] = None if kept is None else [m.content for m in kept.messages]
        result["too_big_stored"] = await store.get("too-big") is not None
    except Exception as exc:
        result["errors"].append(_error(exc))
    await store.close()
    return result


async def first_append_job(url: str, thread_ids: list[str], worker: int) -> dict[str, Any]:
    """append(create=True) one message to each of ``thread_ids``, none of which exists yet."""
    store = await ThreadStore.create(url)
    _wait_for_go()
    errors: list[dict[str, str]] = []
    for thread_id in thread_ids:
        try:
            await store.append(thread_id, Message(role="user", content=f"w{worker}"), create=True)
        except Exception as exc:  # reported to the parent, which fails on any
            errors.append(_error(exc))
    await store.close()
    return {"errors": errors}


async def pop_job(url: str, thread_id: str) -> dict[str, Any]:
    """pop_message until the thread is empty: the contents popped, in order."""
    store = await ThreadStore.create(url)
    _wait_for_go()
    popped: list[str] = []
    errors: list[dict[str, str]] = []
    try:
        while (message := await store.pop_message(thread_id)) is not None:
            popped.append(str(message.content))
    except Exception as exc:
        errors.append(_error(exc))
    await store.close()
    return {"popped": popped, "errors": errors}


JOBS = {
    "append": append_job,
    "create": create_job,
    "full_disk": full_disk_job,
    "first_append": first_append_job,
    "pop": pop_job,
}


def main() -> None:
    job, arguments = sys.argv[1], json.loads(sys.argv[2])
    result = asyncio.run(JOBS[job](**arguments))  # type: ignore[operator]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
