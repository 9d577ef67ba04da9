"""The ``mummi-io`` command line: browse and move data on any backend, run the demo.

Exit codes a script can rely on: 0 success; 1 a mummi_io error (the message
says what to do); 2 bad command-line usage; 3 a key or namespace was not
found, or a signal did not arrive in time; 4 corrupt data (a checksum mismatch, or ``verify`` found bad values).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import IntegrityError, KeyNotFoundError, MummiIOError, NamespaceNotFoundError, SignalTimeoutError
from . import data, migrate, registry, servers, signals, tools

EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CORRUPT = 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mummi-io`` command."""
    parser = argparse.ArgumentParser(
        prog="mummi-io",
        description="Key-value I/O for HPC campaigns over simple files, indexed tar or Redis.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 corrupt data.",
    )
    parser.add_argument("--version", action="version", version=f"mummi-io {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    parser.add_argument("--json", action="store_true", help="print results as JSON (for scripts)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data.add_commands(commands)
    migrate.add_commands(commands)
    registry.add_commands(commands)
    servers.add_commands(commands)
    signals.add_commands(commands)
    tools.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mummi-io``; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # everything after it belongs to benchmarks/run.py, --help included
        return tools.run_bench(arguments[1:])
    args = build_parser().parse_args(arguments)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.handler(args)
    except (KeyNotFoundError, NamespaceNotFoundError, SignalTimeoutError) as exc:
        print(f"mummi-io: not found: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except IntegrityError as exc:
        print(f"mummi-io: corrupt data: {exc}", file=sys.stderr)
        return EXIT_CORRUPT
    except MummiIOError as exc:
        print(f"mummi-io: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `mummi-io cat ... | head`
        return 0
