"""The mummi:// fsspec file system on every backend: fsspec's abstract suite, pandas, numpy, xarray."""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec", reason="pip install 'mummi_io[fsspec]'")

from fsspec.tests.abstract import AbstractFixtures  # noqa: E402
from fsspec.tests.abstract.copy import AbstractCopyTests  # noqa: E402
from fsspec.tests.abstract.get import AbstractGetTests  # noqa: E402
from fsspec.tests.abstract.open import AbstractOpenTests  # noqa: E402
from fsspec.tests.abstract.pipe import AbstractPipeTests  # noqa: E402
from fsspec.tests.abstract.put import AbstractPutTests  # noqa: E402

from mummi_io import InvalidArgumentError, InvalidKeyError, UnknownBackendError, get_io  # noqa: E402
from mummi_io.fsspec import MummiFileSystem  # noqa: E402

BACKENDS = ["simple", "taridx", "redis"]


def _root(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, dict[str, Any]]:
    """A fresh namespace's URL root (``mummi://<kind>/<namespace>!``) and the storage options to reach it."""
    if kind == "redis":
        server = request.getfixturevalue("redis_single")[0]
        return f"mummi://redis/fs-{uuid.uuid4().hex}!", {"nodes": [server.name], "password": server.password}
    return f"mummi://{kind}/{tmp_path}/ns-{uuid.uuid4().hex[:8]}!", {}


# --------------------------------------------------------------------------
# fsspec's abstract test suite. Not applicable: mv.py (it tests LocalFileSystem only).
# Empty directories do not exist here (a directory is a prefix of keys, as on object stores).
# --------------------------------------------------------------------------
class _Fixtures(AbstractFixtures):
    kind = ""

    @pytest.fixture
    def fs(self, request: pytest.FixtureRequest, tmp_path: Any) -> MummiFileSystem:
        root, options = _root(self.kind, request, tmp_path)
        request.node.mummi_root = root
        return MummiFileSystem(skip_instance_cache=True, **options)

    @pytest.fixture
    def fs_path(self, request: pytest.FixtureRequest, fs: MummiFileSystem) -> str:
        return MummiFileSystem._strip_protocol(request.node.mummi_root)

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


class _Suite(_Fixtures, AbstractCopyTests, AbstractGetTests, AbstractPutTests, AbstractOpenTests, AbstractPipeTests):
    pass


class TestSuiteOnSimple(_Suite):
    kind = "simple"


class TestSuiteOnTaridx(_Suite):
    kind = "taridx"


class TestSuiteOnRedis(_Suite):
    kind = "redis"


# --------------------------------------------------------------------------
# What users read and write through it
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
def test_pandas_numpy_and_byte_ranges(kind: str, request, tmp_path) -> None:
    pandas = pytest.importorskip("pandas")
    root, options = _root(kind, request, tmp_path)
    frame = pandas.DataFrame({"step": [1, 2, 3], "energy": [-1.5, -1.25, -1.0]})
    frame.to_csv(f"{root}/tables/energies.csv", index=False, storage_options=options)
    pandas.testing.assert_frame_equal(pandas.read_csv(f"{root}/tables/energies.csv", storage_options=options), frame)

    array = np.arange(1000, dtype=np.float32).reshape(10, 100)
    with fsspec.open(f"{root}/arrays/a.npy", "wb", **options) as handle:
        np.save(handle, array)
    with fsspec.open(f"{root}/arrays/a.npy", "rb", **options) as handle:
        np.testing.assert_array_equal(np.load(handle), array)

    fs = MummiFileSystem(**options)
    value = fs.cat_file(f"{root}/arrays/a.npy")
    assert fs.cat_file(f"{root}/arrays/a.npy", 10, 20) == value[10:20]
    assert fs.cat_file(f"{root}/arrays/a.npy", -16, None) == value[-16:]
    assert fs.cat_file(f"{root}/arrays/a.npy", 5, -5) == value[5:-5]
    with fs.open(f"{root}/arrays/a.npy", "rb", block_size=64) as handle:
        handle.seek(100)
        assert handle.read(300) == value[100:400]
    assert fs.info(f"{root}/arrays/a.npy")["size"] == len(value)
    assert sorted(fs.ls(root, detail=False)) == [f"{fs._strip_protocol(root)}/{d}" for d in ("arrays", "tables")]
    assert fs.find(root) == sorted(f"{fs._strip_protocol(root)}/{k}" for k in ("arrays/a.npy", "tables/energies.csv"))
    fs.rm(f"{root}/tables", recursive=True)
    assert not fs.exists(f"{root}/tables/energies.csv") and not fs.exists(f"{root}/tables")


@pytest.mark.parametrize("kind", BACKENDS)
def test_xarray_opens_zarr_through_the_mapper(kind: str, request, tmp_path) -> None:
    xarray = pytest.importorskip("xarray")
    pytest.importorskip("zarr", minversion="3")
    root, options = _root(kind, request, tmp_path)
    dataset = xarray.Dataset({"rmsd": (("frame",), np.linspace(0.0, 3.0, 50))}, attrs={"system": "RAS"})
    dataset.to_zarr(fsspec.get_mapper(f"{root}/", **options), mode="w")
    reopened = xarray.open_zarr(fsspec.get_mapper(f"{root}/", **options))
    xarray.testing.assert_identical(reopened.load(), dataset)


# --------------------------------------------------------------------------
# Bad URLs, missing keys, refused modes
# --------------------------------------------------------------------------
def test_bad_urls_are_named_with_the_url_form(tmp_path) -> None:
    fs = MummiFileSystem()
    for bad in ["mummi://taridx", "mummi://taridx/no-separator/key", "mummi://simple/!/key"]:
        with pytest.raises(InvalidArgumentError, match=r"mummi://<kind>/<namespace>!/<key>"):
            fs.cat_file(bad)
    with pytest.raises(UnknownBackendError, match="not a backend"):
        fs.cat_file(f"mummi://nosuch/{tmp_path}!/k")
    with pytest.raises(InvalidKeyError):
        fs.pipe_file(f"mummi://simple/{tmp_path}/ns!/../escape", b"x")
    assert not (tmp_path / "escape").exists()


def test_missing_keys_modes_and_directories(tmp_path) -> None:
    fs = MummiFileSystem()
    root = f"mummi://taridx/{tmp_path}/ns!"
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls(root)
    with pytest.raises(FileNotFoundError):
        fs.rm_file(f"{root}/missing")
    fs.pipe_file(f"{root}/dir/a", b"1")
    with pytest.raises(ValueError, match="not supported"):
        fs.open(f"{root}/dir/a", "ab")
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/dir/a", "xb")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(root)
    with pytest.raises(OSError, match="not empty"):
        fs.rmdir(f"{root}/dir")
    assert fs.isdir(f"{root}/dir") and fs.isfile(f"{root}/dir/a") and fs.isdir(root)
    with fs.open(f"{root}/dir/b", "wb") as handle:  # nothing is stored until the file is closed
        handle.write(b"partial")
        assert not fs.exists(f"{root}/dir/b")
    assert fs.cat_file(f"{root}/dir/b") == b"partial"
    assert get_io("taridx").list_keys(str(tmp_path / "ns")) == ["dir/a", "dir/b"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_moves_never_lose_a_key(kind: str, request, tmp_path) -> None:
    """A key moved onto itself (however spelled) stays; directories move whole; refusals remove nothing."""
    root, options = _root(kind, request, tmp_path)
    fs = MummiFileSystem(skip_instance_cache=True, **options)
    fs.pipe_file(f"{root}/a", b"precious")
    fs.mv(f"{root}/a", fs._strip_protocol(f"{root}/a"))
    if kind != "redis":  # the same namespace spelled another way
        kind_, _, rest = fs._strip_protocol(root).partition("/")
        fs.mv(f"{root}/a", f"{kind_}/{rest.replace('/ns-', '/./ns-')}/a")
    assert fs.cat_file(f"{root}/a") == b"precious"
    fs.pipe_file(f"{root}/d/x", b"1")
    fs.pipe_file(f"{root}/d/y/z", b"2")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{root}/d")
    with pytest.raises(IsADirectoryError):
        fs.mv(f"{root}/d", f"{root}/e")
    assert fs.cat_file(f"{root}/d/y/z") == b"2"
    fs.mv(f"{root}/d", f"{root}/e", recursive=True)
    fs.mv(f"{root}/a", f"{root}/e")  # into an existing directory
    stripped = fs._strip_protocol(root)
    assert fs.find(root) == [f"{stripped}/e/{k}" for k in ("a", "x", "y/z")]
    fs.pipe_file(f"{root}/f/w", b"3")
    fs.mv(f"{root}/f", f"{root}/e", recursive=True)  # a directory into an existing one
    assert fs.cat_file(f"{root}/e/f/w") == b"3"


def test_a_write_left_by_an_exception_keeps_the_old_value(tmp_path) -> None:
    fs = MummiFileSystem()
    path = f"mummi://taridx/{tmp_path}/ns!/value"
    fs.pipe_file(path, b"old")
    with pytest.raises(RuntimeError):
        with fs.open(path, "wb") as handle:
            handle.write(b"half of the new")
            raise RuntimeError("the writer failed")
    assert fs.cat_file(path) == b"old"


def test_exists_says_so_or_raises_and_never_takes_a_down_node_for_a_missing_key(tmp_path, redis_password) -> None:
    """fsspec's default exists() turns every error into False; an unreachable key is not an absent one."""
    from mummi_io.backends.redis.local_servers import start_servers, stop_servers
    from mummi_io.core.errors import MummiIOError

    server = start_servers(1, str(tmp_path), redis_password)[0]
    fs = MummiFileSystem(skip_instance_cache=True, nodes=[server.name], password=redis_password)
    root = "mummi://redis/down!"
    try:
        fs.pipe_file(f"{root}/dir/a", b"1")
        assert fs.exists(f"{root}/dir/a") and fs.exists(f"{root}/dir") and fs.exists(root)
        assert not fs.exists(f"{root}/dir/b") and not fs.exists(f"{root}/di") and not fs.isfile(f"{root}/dir")
    finally:
        stop_servers([server])
    with pytest.raises(MummiIOError):
        fs.exists(f"{root}/dir/a")
    with pytest.raises(MummiIOError):
        fs.isdir(f"{root}/dir")


def test_names_only_listing_and_exists_read_no_value(tmp_path) -> None:
    """On taridx a value cut off the tar fails its reads; listing names and exists still answer."""
    from mummi_io import IntegrityError

    root = f"mummi://taridx/{tmp_path}/run.tar!"
    fs = MummiFileSystem(skip_instance_cache=True)
    fs.pipe_file(f"{root}/d/b", b"b" * 5000)
    fs.pipe_file(f"{root}/d/a", b"a" * 5000)
    tar = tmp_path / "run.tar"
    os.truncate(tar, tar.stat().st_size - 3000)  # a's bytes are cut off: the index still lists it
    fresh = MummiFileSystem(skip_instance_cache=True)
    assert fresh.ls(f"{root}/d", detail=False) == [fresh._strip_protocol(f"{root}/d/{k}") for k in "ab"]
    assert fresh.exists(f"{root}/d/a") and fresh.isfile(f"{root}/d/a")
    with pytest.raises(IntegrityError, match="no longer in its tar"):
        fresh.cat_file(f"{root}/d/a")
    with pytest.raises(IntegrityError, match="no longer in its tar"):
        fresh.ls(f"{root}/d", detail=True)


def test_walking_a_namespace_on_a_node_that_refuses_raises_instead_of_looking_empty(tmp_path, redis_password) -> None:
    """find, du, glob and a mapper's keys go through walk(), which fsspec lets swallow OSError."""
    from mummi_io.backends.redis.local_servers import start_servers, stop_servers
    from mummi_io.core.errors import MummiIOError

    server = start_servers(1, str(tmp_path), redis_password)[0]
    try:
        good = MummiFileSystem(skip_instance_cache=True, nodes=[server.name], password=redis_password)
        good.pipe_file("mummi://redis/walked!/d/a", b"1")
        assert good.find("mummi://redis/walked!/") == ["redis/walked!/d/a"]
        refused = MummiFileSystem(skip_instance_cache=True, nodes=[server.name], password="wrong")
        for call in (lambda: refused.find("mummi://redis/walked!/"), lambda: refused.du("mummi://redis/walked!/"),
                     lambda: refused.glob("mummi://redis/walked!/d/*"),
                     lambda: list(fsspec.get_mapper("mummi://redis/walked!/", nodes=[server.name], password="wrong"))):
            with pytest.raises(MummiIOError):
                call()
        assert good.find("mummi://redis/nothing-here!/") == []  # a missing path is still empty
    finally:
        stop_servers([server])


@pytest.mark.parametrize("module, package", [("mummi_io.zarr", "zarr"), ("mummi_io.fsspec", "fsspec")])
def test_a_missing_extra_says_what_to_install(module: str, package: str) -> None:
    import subprocess
    import sys

    program = f"import sys; sys.modules[{package!r}] = None\nimport {module}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode != 0 and f"pip install 'mummi_io[{package}]'" in done.stderr


@pytest.mark.parametrize("kind", BACKENDS)
def test_paths_that_look_alike_stay_apart_and_moves_never_nest_or_mislabel(kind: str, request, tmp_path) -> None:
    """A namespace named "o!" is not "o"; a directory moved onto itself stays; a missing path is FileNotFoundError."""
    root, options = _root(kind, request, tmp_path)
    fs = MummiFileSystem(skip_instance_cache=True, **options)
    plain, bang = root, root.removesuffix("!") + "!!"  # namespaces "<ns>" and "<ns>!"
    fs.pipe_file(f"{plain}/d/x", b"p")
    fs.pipe_file(f"{plain}/keep", b"k")
    fs.pipe_file(f"{bang}/d/x", b"b")
    assert fs.ls(f"{bang}/d", detail=False) == [fs._strip_protocol(f"{bang}/d/x")]
    fs.rm(f"{bang}/d", recursive=True)
    assert fs.cat_file(f"{plain}/d/x") == b"p" and not fs.exists(f"{bang}/d/x")
    fs.mv(f"{plain}/d", f"{plain}/d", recursive=True)
    assert fs.find(plain) == sorted(fs._strip_protocol(f"{plain}/{k}") for k in ["d/x", "keep"])
    with pytest.raises(InvalidArgumentError, match="into itself"):
        fs.mv(f"{plain}/d", f"{plain}/d/e", recursive=True)
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{plain}/missing")
    with pytest.raises(FileNotFoundError):
        fs.mv(f"{plain}/missing", f"{plain}/elsewhere")
    assert fs.cat_file(f"{plain}/d/x") == b"p" and fs.cat_file(f"{plain}/keep") == b"k"


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_transaction_saves_its_files_only_when_it_ends_well(kind: str, request, tmp_path) -> None:
    root, options = _root(kind, request, tmp_path)
    fs = MummiFileSystem(skip_instance_cache=True, **options)
    fs.pipe_file(f"{root}/k", b"old")
    with pytest.raises(RuntimeError):
        with fs.transaction:
            with fs.open(f"{root}/k", "wb") as handle:
                handle.write(b"new")
            assert fs.cat_file(f"{root}/k") == b"old"  # not before the transaction ends
            raise RuntimeError("abort")
    assert fs.cat_file(f"{root}/k") == b"old"
    with fs.transaction:
        with fs.open(f"{root}/k", "wb") as handle:
            handle.write(b"new")
        with fs.open(f"{root}/j", "wb") as handle:
            handle.write(b"second")
        assert not fs.exists(f"{root}/j")
    assert fs.cat_file(f"{root}/k") == b"new" and fs.cat_file(f"{root}/j") == b"second"
