"""Output shared by the command modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidArgumentError


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
            raise InvalidArgumentError(f"backend option {pair!r} is not NAME=VALUE")
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
