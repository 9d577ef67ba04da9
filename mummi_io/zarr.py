"""The zarr v3 store over any backend: ``zarr.open_group(MummiStore(get_io("taridx"), "run.tar"))``.

The public name of :class:`mummi_io.ecosystem.zarr_store.MummiStore` (needs
``pip install 'mummi_io[zarr]'``, zarr 3, Python >= 3.11); see docs/ecosystem.md.
"""

from __future__ import annotations

try:
    from .ecosystem.zarr_store import MummiStore
except ModuleNotFoundError as missing:
    if missing.name is None or missing.name.partition(".")[0] != "zarr":
        raise
    raise ModuleNotFoundError(
        "mummi_io.zarr needs zarr >= 3 (Python >= 3.11): pip install 'mummi_io[zarr]'", name=missing.name,
    ) from missing

__all__ = ["MummiStore"]
