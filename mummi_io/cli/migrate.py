"""Migration commands: take over the keys of a running MuMMI Redis deployment."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidKeyError
from ..keys import key_matcher, validate_key
from ..progress import progress_bar
from ..registry import get_io
from ..sync import sync
from .common import emit, parse_options


def cmd_import_mummi_redis(args: argparse.Namespace) -> int:
    """Copy every namespace of MuMMI's Redis layout into a mummi_io backend, verified and resumable."""
    source_options: dict[str, Any] = {"servers": args.servers} if args.servers else {}
    if args.password:
        source_options["password"] = args.password
    source = get_io("mummi-redis", **source_options)
    destination = get_io(args.to_backend, **parse_options(args.to_option))
    wanted = key_matcher(args.namespaces)
    totals = {"namespaces": 0, "copied": 0, "skipped": 0, "bytes": 0, "invalid_keys": []}
    with source, destination:
        namespaces = [ns for ns in source.backend.namespaces() if wanted(ns)]  # type: ignore[attr-defined]
        for namespace in namespaces:
            keys, invalid = [], []
            for key in source.list_keys(namespace):
                try:
                    keys.append(validate_key(key))
                except InvalidKeyError:
                    invalid.append(f"{namespace}::{key}")
            totals["invalid_keys"] += invalid
            if args.dry_run:
                totals["copied"] += len(keys)
                totals["namespaces"] += 1
                continue
            bar = progress_bar(len(keys), namespace)
            report = sync(source, namespace, destination, namespace, keys=keys, progress=bar.update)
            bar.close()
            totals["namespaces"] += 1
            totals["copied"] += report.copied
            totals["skipped"] += report.skipped
            totals["bytes"] += report.bytes
    verb = "would copy" if args.dry_run else "copied"
    text = (f"{totals['namespaces']} namespace(s): {verb} {totals['copied']} key(s) ({totals['bytes']} bytes, "
            f"verified), {totals['skipped']} already identical")
    if totals["invalid_keys"]:
        text += (f"; {len(totals['invalid_keys'])} key(s) are not valid mummi_io keys and were left: "
                 + ", ".join(totals["invalid_keys"][:10]))
    emit(args, text, totals)
    return 0


def add_commands(commands: Any) -> None:
    """Register the migration commands on the ``mummi-io`` sub-parser set."""
    text = ("copy every key of a MuMMI Redis deployment (MuMMI's 'namespace::key' layout) into a mummi_io "
            "backend, verified and resumable (run it again to finish an interrupted copy)")
    parser = commands.add_parser("import-mummi-redis", help=text, description=text + ". The reverse: "
                                 "mummi-io cp -b redis NS NS --to-backend mummi-redis --to-option servers=FILE")
    parser.add_argument("--servers", help="MuMMI's server list (default $MUMMI_ROOT/redis/all_servers.txt), "
                        "or host:port,host:port")
    parser.add_argument("--password", help="if MuMMI's servers need one (they ran without)")
    parser.add_argument("--namespaces", default="*", help="only the namespaces matching this glob (default *)")
    parser.add_argument("--to-backend", default="redis", help="destination backend (default redis)")
    parser.add_argument("--to-option", action="append", metavar="NAME=VALUE", help="destination backend option")
    parser.add_argument("--dry-run", action="store_true", help="count what would be copied; copy nothing")
    parser.set_defaults(handler=cmd_import_mummi_redis)
