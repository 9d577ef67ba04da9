"""Output shared by the command modules."""

from __future__ import annotations

import argparse
import json
from typing import Any


def emit(args: argparse.Namespace, text: str, payload: Any) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text`` (nothing at all when it is empty)."""
    if args.json:
        print(json.dumps(payload))
    elif text:
        print(text)
