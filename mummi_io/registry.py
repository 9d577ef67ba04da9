"""``get_io``: the :class:`IO` a user works with, over a backend picked by kind.

``IO`` is composed here, at the top of the library's layers: the MuMMI API of
:class:`~mummi_io.facade.Facade` plus the typed objects and groups of
:class:`~mummi_io.objects.ObjectMethods`, which only use the facade's public
methods. Neither layer knows the other is part of the same object.
"""

from __future__ import annotations

import os
from typing import Any

from .backends.kinds import backend_class, get_interfaces, open_backend, register_backend
from .core.coordinator import Coordinator
from .facade import Facade
from .objects import ObjectMethods

#: Environment variable that sets the default ``coordination`` of ``get_io``.
COORDINATION_ENV_VAR = "MUMMI_IO_COORDINATION"


class IO(ObjectMethods, Facade):
    """The MuMMI I/O API over one backend, with typed objects and groups; get one with :func:`get_io`.

    Methods that take ``keys`` accept a single key (and then return a single
    result) or a list of keys (and return a list in the same order). An
    ``IO`` can be pickled to hand it to worker processes, and used as a
    context manager that closes the backend.
    """

    def __enter__(self) -> IO:
        return self


def get_io(kind: str | None = None, **options: Any) -> IO:
    """Return an :class:`IO` object for the backend ``kind``.

    ``kind`` is ``"simple"``, ``"taridx"``, ``"redis"``, or any other of
    :func:`get_interfaces` (``"mummi-redis"``, registered backends); when omitted it is
    read from the ``MUMMI_IO_BACKEND`` environment variable, else ``"simple"``.
    ``options`` go to the backend (for example ``fsync=True`` for ``simple``),
    except ``coordination``: where signals, queues, counters and barriers
    live, ``"files"`` (the default: files under the given path, as MuMMI's
    signal files), ``"backend"`` (on ``redis``: Redis keys, waits blocking in
    the server) or a :class:`~mummi_io.coordination.Coordinator`. The
    environment variable ``MUMMI_IO_COORDINATION`` sets the default.

    Raises
    ------
    UnknownBackendError
        (a ``ValueError``) for an unknown kind, listing the known ones.
    InvalidArgumentError
        For an option the backend does not accept, listing the accepted ones.
    """
    coordination: str | Coordinator = (
        options.pop("coordination", None) or os.environ.get(COORDINATION_ENV_VAR) or "files"
    )
    return IO(open_backend(kind, **options), coordination)


__all__ = ["COORDINATION_ENV_VAR", "IO", "backend_class", "get_interfaces", "get_io", "register_backend"]
