"""Output shared by the command modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..core.errors import InvalidArgumentError, UsageError
from ..registry import IO, get_interfaces, get_io

#: The documented exit codes of every command (README, "The mummi-io command").
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CORRUPT = 0, 1, 2, 3, 4


def emit(args: argparse.Namespace, text: str, payload: Any) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text`` (nothing at all when it is empty)."""
    if args.json:
        print(json.dumps(payload))
    elif text:
        print(text)


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["fsync=true", "nodes=a:1,b:2"]`` -> keyword options (JSON values where they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"backend option {pair!r} is not NAME=VALUE")
        try:
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text
    return options


def safe_key(key: str) -> str:
    """A key as one printable line: control characters and backslashes escaped (``a\\nb`` for a newline)."""
    if key.isprintable() and "\\" not in key:
        return key
    return key.encode("unicode_escape").decode("ascii")


def open_io(kind: str, pairs: list[str] | None) -> IO:
    """The IO of a backend kind and ``NAME=VALUE`` options from the command line (refused ones: bad usage)."""
    options = parse_options(pairs)
    try:
        return get_io(kind, **options)
    except InvalidArgumentError as exc:  # options the backend does not take, or values it refuses
        raise UsageError(str(exc)) from exc


def open_backend(args: argparse.Namespace) -> IO:
    """The IO of the command line's ``-b/--backend`` and ``-o NAME=VALUE`` options."""
    return open_io(args.backend, args.option)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``-b/--backend`` and ``-o/--option`` to a command."""
    parser.add_argument(
        "-b", "--backend", help=f"backend kind: {', '.join(get_interfaces())} (default: $MUMMI_IO_BACKEND or simple)"
    )
    parser.add_argument(
        "-o", "--option", action="append", metavar="NAME=VALUE",
        help="backend option, repeatable (e.g. -o fsync=true, -o nodes=host:6379)",
    )
