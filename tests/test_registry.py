"""get_io, get_interfaces and the backend registry."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import mummi_io
from mummi_io import IO, InvalidArgumentError, UnknownBackendError, get_interfaces, get_io, register_backend
from mummi_io.backends.simple import SimpleBackend
from mummi_io.backends.kinds import _REGISTRY


def test_get_io_returns_an_object_with_the_seed_methods() -> None:
    io = get_io("simple")
    assert isinstance(io, IO)
    for name in [
        "get_type", "check_environment", "file_exists", "namespace_exists", "list_keys", "move_key",
        "save_files", "load_files", "save_npz", "load_npz", "remove_files", "take_backup",
        "save_checkpoint", "load_checkpoint", "send_signal", "test_signal", "wait_signal", "clear_signal",
    ]:
        assert callable(getattr(io, name)), name


def test_unknown_kind_is_a_value_error_listing_known_kinds() -> None:
    with pytest.raises(ValueError, match="simple") as caught:
        get_io("nosuch")
    assert isinstance(caught.value, UnknownBackendError)
    assert "nosuch" in str(caught.value)


def test_get_interfaces_lists_simple() -> None:
    assert "simple" in get_interfaces()
    assert get_interfaces() == sorted(get_interfaces())


def test_default_kind_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUMMI_IO_BACKEND", raising=False)
    assert get_io().get_type() == "simple"
    monkeypatch.setenv("MUMMI_IO_BACKEND", "nosuch")
    with pytest.raises(UnknownBackendError):
        get_io()


def test_options_reach_the_backend_and_bad_options_are_named() -> None:
    assert get_io("simple", fsync=True).backend.fsync is True
    with pytest.raises(InvalidArgumentError, match="fsync") as caught:
        get_io("simple", fsynk=True)
    assert "fsynk" in str(caught.value)


class _UpperBackend(SimpleBackend):
    """A third-party backend: stores values upper-cased, to prove it is the one used."""

    kind = "upper"

    def write_many(self, namespace: str, items: Sequence[tuple[str, bytes]]) -> None:
        super().write_many(namespace, [(k, bytes(v).upper()) for k, v in items])


def test_register_backend(tmp_path) -> None:
    try:
        register_backend("upper", _UpperBackend)
        io = get_io("upper")
        io.save_files(str(tmp_path), "k", b"abc")
        assert io.load_files(str(tmp_path), "k") == b"ABC"
        assert "upper" in get_interfaces()
        with pytest.raises(InvalidArgumentError, match="clobber"):
            register_backend("upper", _UpperBackend)
        register_backend("upper", "mummi_io.backends.simple:SimpleBackend", clobber=True)
        assert get_io("upper").get_type() == "simple"  # imported lazily from the string
    finally:
        _REGISTRY.pop("upper", None)


def test_missing_dependency_gives_install_hint() -> None:
    try:
        register_backend("ghost", "no_such_module_anywhere:Ghost", install_hint="pip install ghost")
        with pytest.raises(ImportError, match="pip install ghost"):
            get_io("ghost")
    finally:
        _REGISTRY.pop("ghost", None)


def test_every_public_error_is_a_mummi_io_error() -> None:
    for name in mummi_io.__all__:
        obj = getattr(mummi_io, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, mummi_io.MummiIOError), name
