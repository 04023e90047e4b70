"""What changed in a Thread since it was loaded from, or saved to, one backend.

A Thread keeps one ``SyncState`` in its instance ``__dict__`` (under ``models.SYNC``, outside
the fields, so never encoded or compared); each message it shares with the store keeps the
state's ``edits`` dict under ``models.EDITS``, where ``Message.__setattr__`` records an
assignment. ``changes()`` reads what a save must write, ``begin()``/``abort()`` bracket the
write, and ``mark_saved()``/``mark_loaded()`` record that the thread matches what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import msgspec

from threadstore.models import EDITS, SYNC, Message, Thread

set_quietly = msgspec.Struct.__setattr__  # sets a field without recording an edit
_get_id = attrgetter("id")


@dataclass(slots=True)
class SyncState:
    """How a Thread stood at its last load or save."""

    origin: object  # the backend it was loaded from or saved to
    snapshot: list[Message]  # thread.messages as of then (a shallow copy)
    known: set[str]  # the ids in snapshot
    stored: set[str]  # of them, the stored ones (not system)
    edits: dict[str, Message]  # id -> message, filled by Message.__setattr__ of the snapshot's


class Changes(NamedTuple):
    """What one save writes (see changes())."""

    new: list[Message]
    edited: list[Message]
    removed: list[str]
    known: set[str]  # the thread's message ids, once `added` are merged in on success
    added: set[str]
    snapshot: list[Message]  # the messages list when the changes were taken
    tracker: dict[str, Message]  # where Message.__setattr__ records edits
    # Only messages were added: snapshot is the one of the last sync, whose first `base` entries
    # the list still holds, followed by `added` (extended in place once the save succeeds).
    appended: tuple[int, list[Message]] | None = None
    synced: bool = False  # the thread was loaded from, or saved to, this backend


def changes(thread: Thread, origin: object) -> Changes:
    """What a save to ``origin`` must write: messages new, edited and removed since the sync.

    The usual case, messages only appended since, costs one comparison of the old list
    prefix (C speed) plus work per new message; anything else compares id sets.
    """
    state: SyncState | None = thread.__dict__.get(SYNC)
    messages = thread.messages
    if state is None or state.origin is not origin:
        messages = list(messages)  # one copy: other threads may append meanwhile (sync facade)
        everything = [m for m in messages if m.role != "system"]
        ids = unique_ids(thread.id, messages)
        return Changes(everything, [], [], ids, set(), list(messages), {})
    before = state.snapshot
    known = state.known
    stored = state.stored
    tracker = state.edits
    # Is the snapshot a prefix of the list? Compared with the added messages appended to it
    # for the moment, not with a slice of the list: the comparison then only reads pointers,
    # where a slice or a copy touches every message (~0.5 ms a save of 10,000, caches cold).
    base = len(before)
    added = messages[base:]
    before.extend(added)
    try:
        appended_only = messages == before
    finally:
        del before[base:]
    if appended_only:
        added_ids = unique_ids(thread.id, added)
        if not added_ids.isdisjoint(known):
            raise ValueError(f"Thread {thread.id!r} holds message {min(added_ids & known)!r} twice")
        new = [m for m in added if m.role != "system"]
        edited = [m for i, m in tracker.items() if i in stored and m.role != "system"]
        # The old objects stay in the snapshot even where an equal copy replaced one, so
        # once that copy is edited the prefix differs and the slow path saves it.
        return Changes(new, edited, [], known, added_ids, before, tracker, (base, added), True)
    messages = list(messages)  # one copy: other threads may append meanwhile (sync facade)
    current = unique_ids(thread.id, messages)
    new_ids = current - known
    new = [m for m in messages if m.id in new_ids and m.role != "system"] if new_ids else []
    # Stored messages replaced by another object with the same id count as edited.
    objects_before = {id(m) for m in before}
    edited = [
        m
        for m in messages
        if m.id in stored and m.role != "system" and (id(m) not in objects_before or m.id in tracker)
    ]
    return Changes(new, edited, sorted(stored - current), current, set(), list(messages), tracker, None, True)


def begin(changes: Changes) -> None:
    """Called just before the write: from now on, edits go to the next save."""
    tracker = changes.tracker
    for message in changes.edited:
        tracker.pop(message.id, None)
    for message in [*changes.new, *changes.edited]:
        message.__dict__[EDITS] = tracker


def abort(changes: Changes) -> None:
    """The write failed: its edits are still to be saved."""
    for message in changes.edited:
        changes.tracker.setdefault(message.id, message)


def mark_loaded(thread: Thread, origin: object) -> Thread:
    """Record that ``thread`` (its messages carrying their sequences) matches what ``origin``
    stores, as after a load; returns it."""
    tracker: dict[str, Message] = {}
    for message in thread.messages:
        message.__dict__[EDITS] = tracker
    snapshot = list(thread.messages)
    known = set(map(_get_id, snapshot))
    stored = {m.id for m in snapshot if m.role != "system"}
    thread.__dict__[SYNC] = SyncState(origin, snapshot, known, stored, tracker)
    return thread


def mark_saved(thread: Thread, origin: object, changes: Changes, sequences: Mapping[str, int]) -> None:
    """Record that ``changes`` were saved to ``origin``: their new messages get the thread's id
    and the stored sequences, and the thread matches ``origin`` as it was when the changes were
    taken (messages added or edited during the write are left for the next save)."""
    for message in changes.new:
        set_quietly(message, "thread_id", thread.id)
    for message in changes.new:
        sequence = sequences.get(message.id)
        if sequence is not None:
            set_quietly(message, "sequence", sequence)
    state: SyncState | None = thread.__dict__.get(SYNC)
    tracker, snapshot = changes.tracker, changes.snapshot
    if changes.appended is not None:  # snapshot is the one of the sync, plus these
        base, added = changes.appended
        if state is not None and state.snapshot is snapshot and len(snapshot) == base:
            snapshot.extend(added)
        else:  # another save of this Thread ended meanwhile
            snapshot = snapshot[:base] + added
    known = changes.known
    known.update(changes.added)
    stored = state.stored if state is not None and state.origin is origin else set()
    stored.difference_update(changes.removed)
    stored.update(map(_get_id, changes.new))
    thread.__dict__[SYNC] = SyncState(origin, snapshot, known, stored, tracker)


def unique_ids(thread_id: str, messages: list[Message]) -> set[str]:
    """The ids of ``messages``; TypeError for an item not a Message, ValueError for an id twice."""
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"Thread {thread_id!r} holds a {type(message).__name__}, not a Message")
    ids = list(map(_get_id, messages))
    unique = set(ids)
    if len(unique) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"Thread {thread_id!r} holds message {duplicate!r} twice")
    return unique
