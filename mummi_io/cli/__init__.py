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
from ..core.errors import (
    IntegrityError, KeyNotFoundError, MummiIOError, NamespaceNotFoundError, SignalTimeoutError, UnknownBackendError,
    UsageError,
)
from . import data, migrate, registry, servers, signals, tools
from .common import EXIT_CORRUPT, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE, safe_key



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
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
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
    except BrokenPipeError:  # `mummi-io cat ... | head`
        return 0
    except Exception as exc:
        if args.debug:
            raise
        code, message = _in_command_line_terms(exc)
        print(f"mummi-io: {message}", file=sys.stderr)
        return code


def _in_command_line_terms(exc: Exception) -> tuple[int, str]:
    """The exit code and one-line message for an error (``--debug`` shows the traceback instead)."""
    if isinstance(exc, KeyNotFoundError):
        shown = ", ".join(safe_key(k) for k in exc.keys[:20]) + (" ..." if len(exc.keys) > 20 else "")
        return EXIT_NOT_FOUND, (f"not found: {len(exc.keys)} key(s) in namespace {exc.namespace!r}: {shown} "
                                f"(list them with: mummi-io ls {exc.namespace})")
    if isinstance(exc, (NamespaceNotFoundError, SignalTimeoutError)):
        return EXIT_NOT_FOUND, f"not found: {exc}"
    if isinstance(exc, IntegrityError):
        return EXIT_CORRUPT, f"corrupt data: {exc}"
    if isinstance(exc, (UsageError, UnknownBackendError)):
        return EXIT_USAGE, f"error: {exc}"
    if isinstance(exc, MummiIOError):
        return EXIT_ERROR, f"error: {exc}"
    if isinstance(exc, OSError):  # a local file named on the command line (put, get --output)
        where = f": {exc.filename}" if exc.filename else ""
        return EXIT_ERROR, f"error: {exc.strerror or exc}{where}"
    if isinstance(exc, ImportError):
        return EXIT_ERROR, (f"error: {exc}; install what this backend needs (redis: pip install 'mummi_io[redis]'), "
                            "or use --debug for the traceback")
    return EXIT_ERROR, f"error: {type(exc).__name__}: {exc} (a bug: please report it with the --debug output)"
