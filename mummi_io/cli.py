"""The ``mummi-io`` command line.

Exit codes: 0 success, 1 a mummi_io error (the message says what to do),
2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def _cmd_servers(args: argparse.Namespace) -> int:
    from . import redis_servers
    from .backends.redis.nodes import default_registry_path, resolve_password

    registry = args.registry or os.environ.get("MUMMI_REDIS_REGISTRY") or default_registry_path()
    if args.action == "register":
        nodes = redis_servers.register(args.host, args.port, registry, cluster=True if args.cluster else None)
        print(f"registered {args.host}:{args.port} ({len(nodes)} node(s) in {registry})")
        return 0
    if args.action == "unregister":
        nodes = redis_servers.unregister(args.host, args.port, registry)
        print(f"unregistered {args.host}:{args.port} ({len(nodes)} node(s) left in {registry})")
        return 0
    if args.action == "wait":
        results = redis_servers.wait_until_ready(registry, args.count, args.timeout)
        print(f"{len(results)} Redis node(s) ready")
        return 0
    nodes, cluster = redis_servers.registered(registry)
    if args.action == "list":
        rows = [{"host": n.host, "port": n.port} for n in nodes]
        if args.json:
            print(json.dumps({"registry": registry, "cluster": cluster, "nodes": rows}))
        else:
            for node in nodes:
                print(f"{node.host} {node.port}")
        return 0
    results = redis_servers.ping(nodes, resolve_password(None, None, registry))
    if args.json:
        print(json.dumps([
            {"node": r.node.name, "ok": r.ok, "latency_ms": r.latency_ms, "used_memory": r.used_memory, "error": r.error}
            for r in results
        ]))
    else:
        for result in results:
            if result.ok:
                print(f"{result.node.name:<28} ok    {result.latency_ms:7.2f} ms  {result.used_memory}")
            else:
                print(f"{result.node.name:<28} DOWN  {result.error}")
    return 0 if all(r.ok for r in results) else 1


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

    servers = commands.add_parser("servers", help="the Redis servers of a deployment (the registry file)")
    servers.add_argument("--registry", help="registry file (default: $MUMMI_REDIS_REGISTRY or $MUMMI_REDIS_DIR/registry)")
    actions = servers.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="print the registered nodes, one 'host port' per line")
    listing.add_argument("--json", action="store_true", help="print JSON")
    pinging = actions.add_parser("ping", help="PING every node: latency and memory; exit 1 if any is down")
    pinging.add_argument("--json", action="store_true", help="print JSON")
    for name, text in [("register", "add a node to the registry"), ("unregister", "remove a node from the registry")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("host")
        action.add_argument("port", type=int)
        if name == "register":
            action.add_argument("--cluster", action="store_true", help="mark the deployment as a Redis Cluster")
    waiting = actions.add_parser("wait", help="wait until COUNT nodes are registered and answer PING")
    waiting.add_argument("count", type=int)
    waiting.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    servers.set_defaults(handler=_cmd_servers)
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
