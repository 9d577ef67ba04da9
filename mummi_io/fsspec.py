"""The fsspec file system of ``mummi://<kind>/<namespace>!/<key>`` URLs, on every backend.

The public name of :class:`mummi_io.ecosystem.fsspec_fs.MummiFileSystem`
(needs ``pip install 'mummi_io[fsspec]'``); fsspec finds it through the
``fsspec.specs`` entry point, so ``fsspec.open("mummi://...")`` needs no import.
See docs/ecosystem.md.
"""

from __future__ import annotations

from .ecosystem.fsspec_fs import SEPARATOR, MummiFileSystem

__all__ = ["SEPARATOR", "MummiFileSystem"]
