#!/usr/bin/env python3
"""`mummi-io servers ...` for the launch scripts, runnable from a checkout without installing.

    python3 scripts/mummi_redis.py register HOST PORT --registry FILE
    python3 scripts/mummi_redis.py wait COUNT --registry FILE --timeout 60

Arguments are those of ``mummi-io servers`` (see ``--help``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mummi_io.cli import main  # noqa: E402

if __name__ == "__main__":
    arguments = sys.argv[1:]
    registry = []
    if "--registry" in arguments:  # accept it anywhere, as the shell scripts pass it last
        at = arguments.index("--registry")
        registry = arguments[at:at + 2]
        del arguments[at:at + 2]
    sys.exit(main(["servers", *registry, *arguments]))
