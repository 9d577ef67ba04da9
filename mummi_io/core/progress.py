"""Progress bars for long command-line operations (tqdm), quiet when not on a terminal."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, description: str, unit: str = "key", enabled: bool | None = None) -> Any:
    """A tqdm bar on stderr; disabled unless stderr is a terminal (or ``enabled`` says so)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=description, unit=unit, disable=not show, file=sys.stderr, leave=False)
