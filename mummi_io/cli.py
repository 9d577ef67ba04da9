"""The ``mummi-io`` command line.

Exit codes: 0 success, 1 a mummi_io error (the message says what to do),
2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence

from . import __version__
from .demo import run_demo
from .errors import MummiIOError
from .registry import get_interfaces, get_io


def _cmd_demo(args: argparse.Namespace) -> int:
    io = get_io(args.backend)
    with tempfile.TemporaryDirectory(prefix="mummi-io-demo-") as scratch:
        summary = run_demo(io, args.dir or scratch, workers=args.workers, results_per_worker=args.results)
    print(f"mummi-io demo on backend {summary.backend!r} in {summary.root}")
    print(f"  {summary.workers} workers wrote {summary.results} npz results and signalled done")
    print(f"  the manager listed, loaded and archived {summary.archived} results")
    print(f"  mean RDF {summary.mean_rdf:.4f}; checkpoint written; {summary.seconds:.2f} s in all")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mummi-io`` command."""
    parser = argparse.ArgumentParser(prog="mummi-io", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mummi-io {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="run a small campaign: workers write results, a manager archives them"
    )
    demo.add_argument(
        "--backend", default=None, help=f"backend kind (default: $MUMMI_IO_BACKEND or simple); one of {get_interfaces()}"
    )
    demo.add_argument("--dir", help="keep the demo's data in this directory (default: a temporary one)")
    demo.add_argument("--workers", type=int, default=4, help="number of worker processes (default 4)")
    demo.add_argument("--results", type=int, default=25, help="results per worker (default 25)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mummi-io``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.handler(args)
    except MummiIOError as exc:
        print(f"mummi-io: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
