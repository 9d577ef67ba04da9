"""The Python data ecosystem on every backend: a zarr v3 store (:mod:`.zarr_store`) and fsspec (:mod:`.fsspec_fs`).

Each adapter is built on the facade only (:class:`mummi_io.IO`), so it works
the same over ``simple``, ``taridx`` and ``redis``; its third-party package is
an optional extra (``pip install 'mummi_io[zarr,fsspec]'``) imported only here.
"""
