"""A signal handler that writes to a taridx namespace while this process is reading its index.

A handler runs between two bytecodes of whatever the main thread is doing,
and the session lock is re-entrant within a thread, so a checkpoint or
clean-up handler may save or remove keys in the middle of a first lookup
(which builds the key dict from the puts read at open) or of a listing.
These tests open a namespace, then run the handler's operation before
*every* bytecode of ``IndexTable.slots`` and ``IndexTable.key_names`` in turn (a
trace hook stands in for the signal, which could land at any of them) and
check that neither
call undoes the handler's work: a removed key stays removed, a saved key
stays saved, in this process, in a fresh one, and after this process
compacts the namespace. (A handler's removal once came back this way, and a
handler's save was dropped.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

from mummi_io import get_io
from mummi_io.backends.taridx.index import IndexTable

_KEYS = ["k"] + [f"x{i}" for i in range(40)]


def _run_with_reentry(target: CodeType, before_opcode: int, nested: Callable[[], None], action: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``action``; call ``nested`` once, before opcode number ``before_opcode`` run in ``target``'s frames.

    Returns whether ``nested`` ran (False once ``before_opcode`` is past the
    last opcode) and what ``action`` returned. ``nested`` runs inside the trace
    function, with tracing off, as a signal handler runs with no handler
    re-entering it.
    """
    seen = 0
    fired = False

    def per_opcode(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal seen, fired
        if event == "opcode" and not fired:
            if seen == before_opcode:
                fired = True
                nested()
            seen += 1
        return per_opcode

    def per_call(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is target and not fired:
            frame.f_trace_opcodes = True
            return per_opcode
        return None

    previous = sys.gettrace()
    sys.settrace(per_call)
    try:
        result = action()
    finally:
        sys.settrace(previous)
    return fired, result


def _fresh_view(ns: str) -> dict[str, bytes]:
    with get_io("taridx") as fresh:
        keys = fresh.list_keys(ns)
        return dict(zip(keys, fresh.load_files(ns, keys)))


def _each_reentry_point(tmp_path: Path, target: CodeType, handler: str, action: str) -> int:
    """Check every re-entry point of ``target``; return how many there were."""
    point = 0
    while True:
        ns = str(tmp_path / f"p{point}.tar")
        with get_io("taridx") as writer:
            writer.save_files(ns, _KEYS[:20], [b"old"] * 20)  # two records: a run of puts read at open
            writer.save_files(ns, _KEYS[20:], [b"old"] * 21)
        before = {key: b"old" for key in _KEYS}
        after = dict(before)
        io = get_io("taridx")
        assert io.list_keys(ns) == sorted(before)  # opened: the puts read at open are not in the key dict yet

        def remove() -> None:
            io.remove_files(ns, "k")

        def look_up_then_save() -> None:
            assert io.file_exists(ns, "x1")
            io.save_files(ns, "ckpt", b"checkpoint")

        if handler == "remove":
            del after["k"]
        else:
            after["ckpt"] = b"checkpoint"
        outer = {"lookup": lambda: io.file_exists(ns, "x5"), "list": lambda: io.list_keys(ns)}[action]
        fired, result = _run_with_reentry(target, point, {"remove": remove, "save": look_up_then_save}[handler], outer)
        if not fired:
            io.close()
            return point
        where = f"handler ran before opcode {point}"
        if action == "lookup":
            assert result is True, where
        else:  # the listing is of the state before the handler ran, or after it
            assert result in (sorted(before), sorted(after)), where
        assert io.list_keys(ns) == sorted(after), where
        assert dict(zip(sorted(after), io.load_files(ns, sorted(after)))) == after, where
        assert io.file_exists(ns, "k") == ("k" in after), where
        assert io.file_exists(ns, "ckpt") == ("ckpt" in after), where
        assert _fresh_view(ns) == after, where
        io.compact(ns)  # rewrites the tar from this process's table: what it holds becomes the only truth
        io.close()
        assert _fresh_view(ns) == after, where
        point += 1


@pytest.mark.parametrize("handler", ["remove", "save"])
@pytest.mark.parametrize(
    ("target", "action"),
    [(IndexTable.slots.fget.__code__, "lookup"), (IndexTable.key_names.__code__, "list")],  # type: ignore[attr-defined]
    ids=["first-lookup", "listing"],
)
def test_a_handler_write_during_an_index_read_is_kept(tmp_path: Path, target: CodeType, action: str, handler: str) -> None:
    """Whatever bytecode the handler lands before, its removal or save holds everywhere afterwards."""
    points = _each_reentry_point(tmp_path, target, handler, action)
    assert points > 10  # the hook reached the code: every one of its bytecodes was a re-entry point
