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

import numpy as np
import pytest

from mummi_io import get_io
from mummi_io.backends.taridx.index import IndexTable

_KEYS = ["k"] + [f"x{i}" for i in range(40)]


#: The bytecodes after which CPython runs a pending signal handler (and at a function's start, RESUME).
_SIGNAL_POINTS = {"CALL", "CALL_FUNCTION_EX", "CALL_KW", "JUMP_BACKWARD"}


def _run_with_reentry(
    target: CodeType, before_opcode: int, nested: Callable[[], None], action: Callable[[], Any],
    where_signals_land: bool = False,
) -> tuple[bool, Any]:
    """Run ``action``; call ``nested`` once, before opcode number ``before_opcode`` run in ``target``'s frames.

    Returns whether ``nested`` ran (False once ``before_opcode`` is past the
    last opcode) and what ``action`` returned. ``nested`` runs inside the trace
    function, with tracing off, as a signal handler runs with no handler
    re-entering it. With ``where_signals_land``, only the opcodes before which
    a signal handler can run count (after a call or a backward jump, and at
    the start): between two attribute stores, say, none can.
    """
    import dis

    seen = 0
    fired = False
    previous: dict[int, str] = {}

    def per_opcode(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal seen, fired
        if event == "opcode" and not fired:
            name = dis.opname[frame.f_code.co_code[frame.f_lasti]]
            after = previous.get(id(frame))
            previous[id(frame)] = name
            if where_signals_land and not (name == "RESUME" or after in _SIGNAL_POINTS):
                return per_opcode
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

    old = sys.gettrace()
    sys.settrace(per_call)
    try:
        result = action()
    finally:
        sys.settrace(old)
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


# ------------------------------------------------- a handler that replaces the files under a read

_BIG = bytes(range(256)) * 2400  # 600 KiB: a slice of it is read in place, not whole


def _replaced_namespace(ns: str) -> dict[str, bytes]:
    """A namespace whose compaction moves every value (removed values lie before them)."""
    values = {f"v{i}": f"value {i} ".encode() * (i + 1) for i in range(6)}
    values["big"] = _BIG
    with get_io("taridx") as writer:
        writer.save_files(ns, [f"junk{i}" for i in range(4)], [b"j" * 70_000] * 4)
        writer.save_files(ns, list(values), list(values.values()))
        writer.remove_files(ns, [f"junk{i}" for i in range(4)])
    return values


def _open_descriptors() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


_READS: dict[str, Callable[[Any, str, list[str]], Any]] = {
    "read_many": lambda backend, ns, keys: backend.read_many(ns, keys),
    "read_buffers": lambda backend, ns, keys: [bytes(v) for v in backend.read_buffers(ns, keys, verify=False)],
    "read_slice": lambda backend, ns, keys: backend.read_ranges_many(ns, ["big", "v3"], [(300_000, 600_000), (2, 9)]),
    "stat_many": lambda backend, ns, keys: backend.stat_many(ns, keys),
}


def _expected_read(action: str, values: dict[str, bytes], keys: list[str]) -> Any:
    from mummi_io.core.crc import crc32

    if action == "read_slice":
        return [values["big"][300_000:600_000], values["v3"][2:9]]
    if action == "stat_many":
        return [(len(values[key]), crc32(values[key])) for key in keys]
    return [values[key] for key in keys]


@pytest.mark.parametrize(
    ("target", "action"),
    [("read_values", "read_many"), ("read", "read_buffers"), ("locate", "read_many"), ("read_slice", "read_slice"),
     ("_mark_agrees", "read_slice"), ("locate", "stat_many")],
)
def test_a_handler_that_replaces_the_files_under_a_read_changes_nothing_the_read_returns(
    tmp_path: Path, target: str, action: str,
) -> None:
    """The handler compacts the namespace (new files, every value moved) and saves, before every bytecode of
    the read in turn: the read returns the stored values, never bytes of the new files read at old places
    (the old descriptor's number once went to a new file), and the handler's work holds."""
    from mummi_io.backends.taridx.session import NamespaceSession

    code = getattr(NamespaceSession, target).__code__
    point = 0
    while True:
        ns = str(tmp_path / f"p{point}.tar")
        values = _replaced_namespace(ns)
        keys = sorted(values)
        baseline = _open_descriptors()
        io = get_io("taridx")
        backend = io.backend
        assert backend.read_many(ns, ["v0"]) == [values["v0"]]  # opened before the traced read

        def handler() -> None:
            backend.compact(ns)
            backend.write_many(ns, [("ckpt", b"checkpoint")])

        fired, result = _run_with_reentry(code, point, handler, lambda: _READS[action](backend, ns, keys))
        if not fired:
            io.close()
            assert point > 10
            return
        where = f"handler before opcode {point} of {target}"
        assert result == _expected_read(action, values, keys), where
        after = dict(values, ckpt=b"checkpoint")
        assert _state(io, ns) == after, where
        io.close()
        assert _open_descriptors() == baseline, where  # the descriptors kept for the read were closed after it
        assert _fresh_view(ns) == after, where
        point += 1


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("handler", ["compact-and-save", "save-elsewhere-evicting"])
def test_a_handler_between_the_pieces_of_a_streamed_read(tmp_path: Path, handler: str, verify: bool) -> None:
    """A value streamed in 8 MiB pieces to a consumer; between two pieces, a handler compacts and saves into
    the namespace, or saves into another one, which makes the LRU (max_open=1) let go of the one being
    read. The consumer gets the stored bytes, and the files kept open for it are closed once it ends."""
    import hashlib

    from mummi_io.core.fs import STREAM_PIECE

    ns, other = str(tmp_path / "run.tar"), str(tmp_path / "ckpt.tar")
    value = np.random.default_rng(7).integers(0, 256, 2 * STREAM_PIECE + 12345, dtype=np.uint8).tobytes()
    with get_io("taridx") as writer:
        writer.save_files(ns, "junk", b"j" * 5_000_000)
        writer.save_files(ns, "big", value)
        writer.remove_files(ns, "junk")
        writer.save_files(other, "seed", b"s")
    baseline = _open_descriptors()
    io = get_io("taridx", max_open=1)
    backend = io.backend
    assert backend.exists_many(ns, ["big"]) == [True]
    streamed = hashlib.sha256()
    pieces = [0]

    def consume(piece: memoryview) -> None:
        streamed.update(piece)
        pieces[0] += 1
        if pieces[0] == 1:  # where a signal's handler could run
            if handler == "compact-and-save":
                backend.compact(ns)
                backend.write_many(ns, [("ckpt", b"checkpoint")])
            else:
                backend.write_many(other, [("ckpt", b"checkpoint")])

    got = backend.read_buffer_streamed(ns, "big", consume, verify=verify)
    assert pieces[0] == 3
    assert bytes(got) == value
    assert streamed.digest() == hashlib.sha256(value).digest()
    assert backend.read_many(ns, ["big"]) == [value]
    io.close()
    assert _open_descriptors() == baseline
    expected_here = {"big": value, "ckpt": b"checkpoint"} if handler == "compact-and-save" else {"big": value}
    assert _fresh_view(ns) == expected_here
    assert _fresh_view(other) == ({"seed": b"s"} if handler == "compact-and-save" else {"seed": b"s", "ckpt": b"checkpoint"})


@pytest.mark.parametrize("target", ["__call__", "close"])
def test_a_handler_inside_the_session_table_guard_saves_elsewhere_without_hanging(tmp_path: Path, target: str) -> None:
    """The documented advice, "save into another namespace from a handler", run before every bytecode of
    the code that picks or closes sessions: the handler's save completes (it once waited forever for a lock
    its own thread held), and both namespaces hold what they should."""
    import faulthandler

    from mummi_io.backends.taridx.session import Sessions

    code = getattr(Sessions, target).__code__
    faulthandler.dump_traceback_later(300, exit=True)  # a hang fails the run instead of stalling it
    try:
        point = 0
        while True:
            a, b, ckpt = (str(tmp_path / f"{name}{point}.tar") for name in ("a", "b", "ckpt"))
            with get_io("taridx") as writer:
                writer.save_files(a, "x", b"A")
                writer.save_files(b, "y", b"B")
            io = get_io("taridx", max_open=2)
            assert io.file_exists(a, "x")
            assert io.file_exists(b, "y")
            saved: list[str] = []

            def handler() -> None:
                io.save_files(ckpt, "state", b"checkpoint")
                saved.append("state")

            outer: Callable[[], Any] = (lambda: io.file_exists(a, "x")) if target == "__call__" else io.close
            fired, result = _run_with_reentry(code, point, handler, outer, where_signals_land=True)
            io.close()
            if not fired:
                assert point > 5
                return
            where = f"handler at signal point {point} of Sessions.{target}"
            assert saved == ["state"], where
            if target == "__call__":
                assert result is True, where
            assert _fresh_view(ckpt) == {"state": b"checkpoint"}, where
            assert _fresh_view(a) == {"x": b"A"} and _fresh_view(b) == {"y": b"B"}, where
            point += 1
    finally:
        faulthandler.cancel_dump_traceback_later()


class _Interrupt(BaseException):
    """What the timer's handler raises, as Ctrl-C raises KeyboardInterrupt."""


# The timer's exception also lands in garbage-collector callbacks, which Python reports as unraisable (as it
# does for Ctrl-C there): expected here, and not about mummi_io.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_interrupts_kept_alive_leave_nothing_held(tmp_path: Path) -> None:
    """A timer signal whose handler raises (as Ctrl-C does) lands in hundreds of saves and loads, and the
    program keeps every exception (as a REPL's ``sys.last_value`` or a list of errors would): no call of the
    thread is refused (a block once stayed open inside a suspended generator: the writer lock held, every
    later call refused), after its next call nothing stays held, another thread and another process can
    still save (filelock once left its own thread lock held), and every save that returned is there."""
    import signal
    import subprocess
    import threading

    ns = str(tmp_path / "run.tar")
    io = get_io("taridx")
    io.save_files(ns, "seed", b"seed")
    session = io.backend.sessions(ns)
    kept: list[BaseException] = []
    acknowledged = {"seed": b"seed"}

    def handler(signum: int, frame: object) -> None:
        raise _Interrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        for attempt in range(1500):
            key = f"k{attempt}"
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.00002 + (attempt % 41) * 0.000006)
                if attempt % 3:
                    io.save_files(ns, key, key.encode())
                    acknowledged[key] = key.encode()
                else:
                    io.load_files(ns, ["seed"])
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _Interrupt as exc:
                signal.setitimer(signal.ITIMER_REAL, 0)
                kept.append(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(kept) > 100  # the handler did land inside calls
    io.save_files(ns, "after", b"after")  # gives back what an exit interrupted at its first bytecode kept
    acknowledged["after"] = b"after"
    state = session.state
    from mummi_io.backends.taridx.state import BUSY

    assert not BUSY and not state.blocks and not state.retired and state.mutex_holder is None
    assert not state.mutex._is_owned() and (state.lock is None or not state.lock.is_locked)
    other = threading.Thread(target=io.save_files, args=(ns, "thread", b"thread"), daemon=True)
    other.start()
    other.join(60)
    assert not other.is_alive()
    acknowledged["thread"] = b"thread"
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from mummi_io import get_io; "
         "get_io('taridx', lock_timeout=30).save_files(sys.argv[1], 'child', b'child')", ns],
        capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == 0, child.stderr
    acknowledged["child"] = b"child"
    seen = _state(io, ns)
    assert {key: seen.get(key) for key in acknowledged} == acknowledged
    io.close()
    with get_io("taridx") as fresh:
        assert _state(fresh, ns) == seen


_SAVE_EXIT = ["_Locked.__exit__", "_Block._close", "_Locked._undo", "ExclusiveFileLock.release", "_Block._undo",
              "NamespaceSession.last_block_ended"]
_LOAD_EXIT = ["_Reading.__exit__", "_Block._close", "_Block._undo", "NamespaceSession.last_block_ended"]


def _exit_steps() -> list[tuple[str, CodeType]]:
    from mummi_io.backends.taridx import session as session_module
    from mummi_io.core.flock import ExclusiveFileLock

    return [
        ("_Reading.__exit__", session_module._Reading.__exit__.__code__),
        ("_Locked.__exit__", session_module._Locked.__exit__.__code__),
        ("_Block._close", session_module._Block._close.__code__),
        ("_Block._undo", session_module._Block._undo.__code__),
        ("_Locked._undo", session_module._Locked._undo.__code__),
        ("ExclusiveFileLock.release", ExclusiveFileLock.release.__code__),
        ("NamespaceSession.last_block_ended", session_module.NamespaceSession.last_block_ended.__code__),
    ]


@pytest.mark.parametrize("then", ["next-call", "close", "another-thread-evicts"])
@pytest.mark.parametrize(("call", "step"), [("save", step) for step in _SAVE_EXIT] + [("load", step) for step in _LOAD_EXIT])
def test_an_interrupt_at_the_start_of_any_exit_step_is_healed(tmp_path: Path, call: str, step: str, then: str) -> None:
    """CPython runs a pending handler at the start of every Python function, so Ctrl-C can skip any step of a
    block's exit. Raised there (the first call of the step in the traced call): the thread's next call on the
    namespace, or closing the io object, gives back what the skipped steps held (the writer lock once stayed
    held for good, and the thread was once refused forever), also after another thread's call made the LRU
    (max_open=1) let go of namespaces; then another thread and another process save."""
    import subprocess
    import threading

    from mummi_io.backends.taridx.state import BUSY

    code = dict(_exit_steps())[step]
    ns = str(tmp_path / "run.tar")
    io = get_io("taridx", lock_timeout=30, max_open=1)
    io.save_files(ns, "seed", b"seed")
    session = io.backend.sessions(ns)
    fired = [False]

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code is code and not fired[0]:
            fired[0] = True
            raise _Interrupt(step)
        return None

    sys.settrace(tracer)
    try:
        if call == "save":
            io.save_files(ns, "new", b"new")
        else:
            io.load_files(ns, ["seed"])
    except _Interrupt:
        pass
    finally:
        sys.settrace(None)
    assert fired[0], f"a {call} no longer calls {step}: update the list"
    if then == "another-thread-evicts":
        evicting = threading.Thread(target=io.save_files, args=(str(tmp_path / "other.tar"), "o", b"o"), daemon=True)
        evicting.start()
        evicting.join(60)
        assert not evicting.is_alive()
        session = io.backend.sessions(ns)  # the same session if it was kept, else a new one
        then = "next-call"
    if then == "next-call":
        assert io.load_files(ns, ["seed"]) == [b"seed"]
        io.save_files(ns, "after", b"after")
        state = session.state
        assert not BUSY and not state.blocks and state.mutex_holder is None and not state.mutex._is_owned()
        assert state.lock is None or not state.lock.is_locked
        other = threading.Thread(target=io.save_files, args=(ns, "thread", b"thread"), daemon=True)
        other.start()
        other.join(60)
        assert not other.is_alive()
    io.close()
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from mummi_io import get_io; "
         "get_io('taridx', lock_timeout=30).save_files(sys.argv[1], 'child', b'child')", ns],
        capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == 0, child.stderr
    seen = _fresh_view(ns)
    assert seen["seed"] == b"seed" and seen["child"] == b"child"
    if then == "next-call":
        assert seen["after"] == b"after" and seen["thread"] == b"thread"
