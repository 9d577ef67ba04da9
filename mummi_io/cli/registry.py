"""``mummi-io registry``: the committable file registry (ds_model_filer's workflow)."""

from __future__ import annotations

import argparse
from typing import Any

from ..filer import Filer
from .common import emit, open_io


def cmd_registry(args: argparse.Namespace) -> int:
    remote = open_io(args.remote_backend, args.option)
    with remote:
        filer = Filer(args.local_dir, remote, args.remote_namespace, registry_file=args.registry_file)
        if args.action == "show":
            entries = {name: {"sha256": digest, "state": state} for name, (digest, state) in filer.entries().items()}
            emit(args, filer.show_files(), entries)
            return 0
        if args.action == "push-all":
            names = filer.push_all()
        elif args.action == "remove-locals":
            names = filer.remove_locals()
        else:
            for name in args.names:
                if args.action == "push":
                    filer.push(name)
                elif args.action == "pull":
                    filer.pull(name)
                else:
                    filer.remove(name, remove_remote=args.remove_remote)
            names = list(args.names)
    emit(args, f"{args.action}: {', '.join(names) or 'nothing to do'}", {args.action: names})
    return 0


def add_commands(commands: Any) -> None:
    """Register ``registry`` and its actions."""
    parser = commands.add_parser("registry", help="a committable registry of objects kept on a remote backend")
    parser.add_argument("--local-dir", default=".", help="directory of the local copies (default .)")
    parser.add_argument("--registry-file", help="registry file (default: LOCAL_DIR/.mummi_registry)")
    parser.add_argument("--remote-backend", required=True, help="backend kind of the remote")
    parser.add_argument("--remote-namespace", required=True, help="namespace on the remote")
    parser.add_argument("-o", "--option", action="append", metavar="NAME=VALUE", help="remote backend option")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="each object and its state (local or synced)")
    actions.add_parser("push-all", help="push every local object")
    actions.add_parser("remove-locals", help="remove every object never pushed")
    for name, text in [("push", "copy objects to the remote"), ("pull", "fetch objects from the remote"),
                       ("remove", "forget objects (their local copies)")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("names", nargs="+")
        if name == "remove":
            action.add_argument("--remove-remote", action="store_true", help="also delete the remote copies")
    parser.set_defaults(handler=cmd_registry)
