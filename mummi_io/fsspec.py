"""The fsspec file system of ``mummi://<kind>/<namespace>!/<key>`` URLs, on every backend.

The public name of :class:`mummi_io.ecosystem.fsspec_fs.MummiFileSystem`
(needs ``pip install 'mummi_io[fsspec]'``); fsspec finds it through the
``fsspec.specs`` entry point, so ``fsspec.open("mummi://...")`` needs no import.
See docs/ecosystem.md.
"""

from __future__ import annotations

try:
    from .ecosystem.fsspec_fs import SEPARATOR, MummiFileSystem
except ModuleNotFoundError as missing:
    if missing.name is None or missing.name.partition(".")[0] != "fsspec":
        raise
    raise ModuleNotFoundError("mummi_io.fsspec needs fsspec: pip install 'mummi_io[fsspec]'",
                              name=missing.name) from missing

__all__ = ["SEPARATOR", "MummiFileSystem"]
