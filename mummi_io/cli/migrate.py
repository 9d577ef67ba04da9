"""Migration commands: take over the keys of a running MuMMI Redis deployment."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..core.contract import Enumerable
from ..core.errors import InvalidArgumentError, InvalidKeyError, MummiIOError
from ..core.keys import key_matcher, validate_key
from ..core.progress import progress_bar
from ..registry import get_io
from ..sync import sync
from .common import emit, open_io


def _destination_namespace(namespace: str, root: str | None) -> str:
    """Where a MuMMI namespace lands: as named, or below ``root`` (``/p/run/ns`` -> ``ROOT/p/run/ns``).

    Raises
    ------
    InvalidArgumentError
        For a namespace with a ``..`` component under ``--root``: it could land outside the root.
    """
    if root is None:
        return namespace
    parts = [part for part in namespace.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise InvalidArgumentError(f"namespace {namespace!r} cannot be placed under --root {root!r}: it names "
                                   "'..' or nothing; copy it without --root, or rename it first")
    return os.path.join(root, *parts)


def _import_namespace(source: Any, destination: Any, namespace: str, mode: str, args: argparse.Namespace,
                      left: list[str]) -> Any:
    """Copy (or move) one MuMMI namespace; keys that cannot be mummi_io keys are added to ``left``."""
    if not namespace:
        raise InvalidArgumentError("an empty namespace ('::key') has no place in mummi_io")
    target = _destination_namespace(namespace, args.root)
    keys = []
    for key in source.list_keys(namespace):
        try:
            keys.append(validate_key(key))
        except InvalidKeyError as exc:
            left.append(f"{namespace}::{key} ({exc})")
    bar = progress_bar(len(keys), namespace)
    try:
        return sync(source, namespace, destination, target, mode=mode, keys=keys, progress=bar.update,
                    overwrite=args.overwrite, dry_run=args.dry_run)
    finally:
        bar.close()


def cmd_import_mummi_redis(args: argparse.Namespace) -> int:
    """Copy (or move) every namespace of MuMMI's Redis layout into a mummi_io backend, verified and resumable."""
    source_options: dict[str, Any] = {"servers": args.servers} if args.servers else {}
    if args.password:
        source_options["password"] = args.password
    source = get_io("mummi-redis", **source_options)
    destination = open_io(args.to_backend, args.to_option)
    wanted = key_matcher(args.namespaces)
    mode = "move" if args.move else "copy"
    totals: dict[str, Any] = {"namespaces": 0, "copied": 0, "skipped": 0, "removed_from_source": 0, "bytes": 0,
                              "left": [], "conflicts": []}
    with source, destination:
        enumerable = source.capability(Enumerable)
        if enumerable is None:
            raise InvalidArgumentError(f"the {source.get_type()} backend cannot list its namespaces")
        namespaces = [ns for ns in enumerable.namespaces() if wanted(ns)]
        for namespace in namespaces:
            try:
                report = _import_namespace(source, destination, namespace, mode, args, totals["left"])
            except MummiIOError as exc:  # this namespace cannot be placed: leave it, say why, go on with the rest
                totals["left"].append(f"namespace {namespace!r} stopped ({exc}): what it had not copied stays on "
                                      "MuMMI's servers")
                continue
            totals["namespaces"] += 1
            for name in ("copied", "skipped", "removed_from_source", "bytes"):
                totals[name] += getattr(report, name)
            target = _destination_namespace(namespace, args.root)
            totals["conflicts"] += [f"{namespace}::{key} -> {target}" for key in report.conflicts]
            totals["left"] += [f"{namespace}::{key} (not a string value, e.g. a list or hash, or removed meanwhile)"
                               for key in report.vanished]
        totals["left"] += enumerable.unusable
    would = "would " if args.dry_run else ""
    text = (f"{totals['namespaces']} namespace(s): {would}copy {totals['copied']} key(s) ({totals['bytes']} bytes"
            f"{'' if args.dry_run else ', verified'}), {totals['skipped']} already identical")
    if args.move:
        text += f", {would}remove {totals['removed_from_source']} from MuMMI's servers"
    if args.dry_run:
        text += "; dry run: nothing was written or removed"
    if totals["conflicts"]:
        text += (f"; {len(totals['conflicts'])} key(s) differ from what the destination already holds and were "
                 "left on both sides (compare them, then rerun with --overwrite to take MuMMI's): "
                 + ", ".join(totals["conflicts"][:10]))
    if totals["left"]:
        text += (f"; {len(totals['left'])} key(s) cannot be mummi_io keys and were left on MuMMI's servers: "
                 + ", ".join(totals["left"][:10]))
    emit(args, text, totals)
    return 1 if totals["conflicts"] or totals["left"] else 0


def add_commands(commands: Any) -> None:
    """Register the migration commands on the ``mummi-io`` sub-parser set."""
    text = ("copy (or --move) every key of a MuMMI Redis deployment (MuMMI's 'namespace::key' layout) into a "
            "mummi_io backend, verified and resumable (run it again to finish an interrupted copy); exits 1 when "
            "keys were left behind")
    parser = commands.add_parser("import-mummi-redis", help=text, description=text + ". The reverse: "
                                 "mummi-io cp -b redis NS NS --to-backend mummi-redis --to-option servers=FILE")
    parser.add_argument("--servers", help="MuMMI's server list (default $MUMMI_ROOT/redis/all_servers.txt), "
                        "or host:port,host:port")
    parser.add_argument("--password", help="if MuMMI's servers need one (they ran without)")
    parser.add_argument("--namespaces", default="*", help="only the namespaces matching this glob (default *)")
    parser.add_argument("--to-backend", default="redis", help="destination backend (default redis)")
    parser.add_argument("--to-option", action="append", metavar="NAME=VALUE", help="destination backend option")
    parser.add_argument("--root", metavar="DIR", help="for a file backend: place each namespace below DIR "
                        "(MuMMI's namespaces are absolute paths; default: write them where they name)")
    parser.add_argument("--move", action="store_true", help="remove each key from MuMMI's servers once its copy "
                        "is verified (stop MuMMI's writers first)")
    parser.add_argument("--overwrite", action="store_true", help="replace destination keys that hold other bytes "
                        "(default: leave them, report them and exit 1)")
    parser.add_argument("--dry-run", action="store_true", help="compare and report what would be copied "
                        "(and removed); write nothing")
    parser.set_defaults(handler=cmd_import_mummi_redis)
