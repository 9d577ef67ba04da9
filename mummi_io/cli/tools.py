"""``mummi-io demo`` and ``mummi-io bench``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any

from ..demo import run_demo
from ..registry import get_interfaces, get_io
from .common import emit


def cmd_demo(args: argparse.Namespace) -> int:
    io = get_io(args.backend)
    with tempfile.TemporaryDirectory(prefix="mummi-io-demo-") as scratch:
        summary = run_demo(io, args.dir or scratch, workers=args.workers, results_per_worker=args.results)
    text = "\n".join([
        f"mummi-io demo on backend {summary.backend!r} in {summary.root}"
        + ("" if args.dir else " (a temporary directory, now removed: --dir DIR keeps the files)"),
        f"  {summary.workers} workers wrote {summary.results} npz results and signalled done",
        f"  the manager listed, loaded and archived {summary.archived} results",
        f"  mean RDF {summary.mean_rdf:.4f}; checkpoint written; {summary.seconds:.2f} s in all",
    ])
    emit(args, text, summary.__dict__)
    return 0


def run_bench(arguments: list[str]) -> int:
    """Run ``benchmarks/run.py`` of the source checkout with ``arguments``."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks", "run.py")
    if not os.path.exists(script):
        print("mummi-io: error: the benchmarks live in a source checkout: run mummi-io bench from one",
              file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, script, *arguments])


def cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args.bench_args)


def add_commands(commands: Any) -> None:
    """Register ``demo`` and ``bench``."""
    demo = commands.add_parser("demo", help="run a small campaign: workers write results, a manager archives them")
    demo.add_argument("--backend", default=None,
                      help=f"backend kind (default: $MUMMI_IO_BACKEND or simple); one of {get_interfaces()}")
    demo.add_argument("--dir", help="keep the demo's data in this directory (default: a temporary one)")
    demo.add_argument("--workers", type=int, default=4, help="number of worker processes (default 4)")
    demo.add_argument("--results", type=int, default=25, help="results per worker (default 25)")
    demo.set_defaults(handler=cmd_demo)
    bench = commands.add_parser("bench", help="run the benchmarks (benchmarks/run.py; --help for its options)",
                                add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=cmd_bench)
