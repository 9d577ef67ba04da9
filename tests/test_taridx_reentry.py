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


def _state(io: object, ns: str) -> dict[str, bytes]:
    keys = io.list_keys(ns)  # type: ignore[attr-defined]
    return dict(zip(keys, io.load_files(ns, keys)))  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["commit", "_write_batch", "_append_index", "load", "_read_index_tail"])
def test_a_handler_write_during_a_write_or_an_open_is_turned_away(tmp_path: Path, target: str) -> None:
    """While its thread writes to a namespace or reads its index in, a handler's write is refused before it
    does anything, and the interrupted call stops as after an interruption: nothing committed is lost or torn."""
    from mummi_io import ReentrantCallError
    from mummi_io.backends.taridx.session import NamespaceSession
    from mummi_io.backends.taridx.state import StateLoader

    method = getattr(NamespaceSession, target, None) or getattr(StateLoader, target)
    code = getattr(method, "__wrapped__", method).__code__
    point = 0
    while True:
        ns = str(tmp_path / f"p{point}.tar")
        with get_io("taridx") as writer:
            writer.save_files(ns, _KEYS, [b"old"] * len(_KEYS))
        before = {key: b"old" for key in _KEYS}
        io = get_io("taridx")
        if target == "load":
            outer: Callable[[], Any] = lambda: io.list_keys(ns)  # noqa: E731
        else:
            io.list_keys(ns)  # opened: the write, or reading another process's, is the traced call
            outer = lambda: io.save_files(ns, ["new1", "new2"], [b"N1", b"N2"])  # noqa: E731
        if target == "_read_index_tail":
            with get_io("taridx") as other:
                other.save_files(ns, ["new1", "new2"], [b"N1", b"N2"])  # to be read in by the outer save

        def handler() -> None:
            io.save_files(ns, "ckpt", b"checkpoint")

        try:
            fired, _ = _run_with_reentry(code, point, handler, outer)
        except ReentrantCallError:
            fired = True
        else:
            if not fired:
                io.close()
                assert point > 10
                return
            pytest.fail(f"the handler's write before opcode {point} of {target} was not turned away")
        where = f"handler before opcode {point} of {target}"
        after_outer = dict(before, new1=b"N1", new2=b"N2")
        seen = _state(io, ns)
        assert seen in (before, after_outer), where  # the interrupted save: all or nothing
        with get_io("taridx") as fresh:
            assert _state(fresh, ns) == seen, where
        io.save_files(ns, "ckpt", b"checkpoint")  # the handler's save, done again from the main loop
        io.close()
        with get_io("taridx") as fresh:
            assert _state(fresh, ns) == dict(seen, ckpt=b"checkpoint"), where
        point += 1


def test_real_signals_during_saves_lose_nothing_acknowledged(tmp_path: Path) -> None:
    """A timer signal every 0.7 ms whose handler saves a checkpoint into the namespace the main loop writes to,
    catching the refusal when it lands in the middle of a write: every save that returned (the main loop's and
    the handler's) is there, with its value, in a fresh process, and the main loop never sees an error.
    (Letting the refusal through stops the interrupted call: that case is tested at every bytecode above.)"""
    import signal

    from mummi_io import ReentrantCallError

    ns = str(tmp_path / "run.tar")
    io = get_io("taridx")
    acknowledged: dict[str, bytes] = {}
    calls = {"handler": 0, "refused": 0}

    def handler(signum: int, frame: object) -> None:
        calls["handler"] += 1
        key = f"ckpt-{calls['handler']}"
        try:
            io.save_files(ns, key, key.encode() * 50)
        except ReentrantCallError:
            calls["refused"] += 1
        else:
            acknowledged[key] = key.encode() * 50

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
    try:
        for batch in range(600):
            keys = [f"m{batch}-{j}" for j in range(5)]
            values = [key.encode() * 30 for key in keys]
            io.save_files(ns, keys, values)
            acknowledged.update(zip(keys, values))
            if batch % 20 == 0:
                assert io.file_exists(ns, keys[0])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        io.close()
    assert calls["handler"] > 50, calls  # the timer did interrupt the loop
    assert 0 < calls["refused"] < calls["handler"], calls  # some landed in writes, some between them
    with get_io("taridx") as fresh:
        assert _state(fresh, ns) == acknowledged, calls
