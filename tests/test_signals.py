"""Signal files: send, test, wait with backoff, clear."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from mummi_io import InvalidKeyError, SignalTimeoutError, get_io


@pytest.fixture
def io():
    return get_io("simple")


def _send_later(path: str, key: str, delay: float) -> None:
    time.sleep(delay)
    get_io("simple").send_signal(path, key)


def test_send_test_clear(io, tmp_path: Path) -> None:
    path = str(tmp_path / "signals")
    assert io.test_signal(path, "done") is False
    io.send_signal(path, "done")
    assert io.test_signal(path, "done") is True
    assert (tmp_path / "signals" / "done").read_text() == "1"
    io.clear_signal(path, "done")
    assert io.test_signal(path, "done") is False
    io.clear_signal(path, "done")  # clearing twice is a no-op


def test_empty_key_is_no_signal(io, tmp_path: Path) -> None:
    assert io.test_signal(str(tmp_path), "") is False


@pytest.mark.parametrize("key", ["../up", "/abs", "a/b", "."])
def test_signal_keys_cannot_escape(io, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        io.send_signal(str(tmp_path / "s"), key)
    with pytest.raises(InvalidKeyError):
        io.test_signal(str(tmp_path / "s"), key)
    assert not (tmp_path / "s").exists()


def test_wait_returns_when_another_process_signals(io, tmp_path: Path) -> None:
    path = str(tmp_path)
    sender = multiprocessing.get_context("spawn").Process(target=_send_later, args=(path, "go", 0.3))
    sender.start()
    try:
        assert io.wait_signal(path, "go", timeout=60) is True
    finally:
        sender.join(30)


def test_wait_times_out_naming_the_signal(io, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SignalTimeoutError, match="never") as caught:
        io.wait_signal(str(tmp_path), "never", timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_for_present_signal_returns_at_once(io, tmp_path: Path) -> None:
    io.send_signal(str(tmp_path), "here")
    assert io.wait_signal(str(tmp_path), "here", timeout=0) is True
