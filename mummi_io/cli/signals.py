"""``mummi-io signal``: send, test, wait for and clear signals from job scripts."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import SignalTimeoutError
from .common import EXIT_NOT_FOUND, add_backend_arguments, emit, open_backend



def cmd_signal(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        if args.action == "send":
            io.send_signal(args.path, args.keys)
            emit(args, "", {"sent": args.keys})
            return 0
        if args.action == "clear":
            io.clear_signal(args.path, args.keys)
            emit(args, "", {"cleared": args.keys})
            return 0
        if args.action == "test":
            raised = io.test_signal(args.path, list(args.keys))
            emit(args, "\n".join(f"{key}\t{'raised' if up else 'missing'}" for key, up in zip(args.keys, raised)),
                 dict(zip(args.keys, raised)))
            return 0 if all(raised) else EXIT_NOT_FOUND
        try:
            arrived = io.wait_signals(args.path, args.keys, timeout=args.timeout, mode="any" if args.any else "all")
        except SignalTimeoutError as late:
            emit(args, "", {"arrived": [k for k in args.keys if k not in late.missing], "missing": late.missing})
            raise
        emit(args, "\n".join(arrived), {"arrived": arrived, "missing": []})
        return 0


def add_commands(commands: Any) -> None:
    """Register ``signal`` and its actions."""
    parser = commands.add_parser(
        "signal", help="send, test, wait for or clear signals (files, or Redis with -o coordination=backend)",
        description="Signals between jobs. Exit code 3: 'test' found a signal missing, or 'wait' timed out.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in [("send", "raise signals"), ("test", "exit 0 if every signal is raised, else 3"),
                       ("wait", "block until all (or --any) of the signals are raised"),
                       ("clear", "lower signals")]:
        action = actions.add_parser(name, help=text, description=text)
        add_backend_arguments(action)
        action.add_argument("path", help="the signals' place: a directory (files) or a name (Redis)")
        action.add_argument("keys", nargs="+", help="signal names")
        if name == "wait":
            action.add_argument("--timeout", type=float, help="seconds before giving up (exit 3); default: forever")
            action.add_argument("--any", action="store_true", help="return when any one signal is raised")
    parser.set_defaults(handler=cmd_signal)
