"""Data commands: ls, cat, get, put, rm, mv, info, cp, verify, reindex, compact."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..core.errors import InvalidArgumentError, KeyNotFoundError, NamespaceNotFoundError
from ..core.progress import progress_bar
from ..registry import IO
from ..sync import sync, verify_keys
from .common import EXIT_CORRUPT, add_backend_arguments, emit, open_backend, open_io, safe_key

def _existing(io: IO, namespace: str) -> str:
    """``namespace``, which must exist: a command on a misspelt namespace changes nothing and exits 3."""
    if not io.namespace_exists(namespace):
        raise NamespaceNotFoundError(
            f"namespace {namespace!r} does not exist on the {io.get_type()} backend; nothing was changed. Check "
            "the name (and -b/--backend, -o options)"
        )
    return namespace


def _keys(io: IO, args: argparse.Namespace) -> list[str]:
    """The keys named on the command line, or those matching ``--pattern``."""
    if args.keys and args.pattern:
        raise InvalidArgumentError("give keys or --pattern, not both")
    if args.pattern:
        return io.list_keys(args.namespace, args.pattern)
    if not args.keys:
        raise InvalidArgumentError("name at least one key, or use --pattern")
    return list(args.keys)


def _stat_all(io: IO, namespace: str, keys: list[str]) -> list[dict[str, Any]]:
    """Size and CRC-32 of every key, in batches, with a progress bar on a terminal."""
    stats: list[dict[str, Any]] = []
    bar = progress_bar(len(keys), "stat")
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        stats += [found for found in io.stat_keys(namespace, chunk) if found is not None]
        bar.update(len(chunk))
    bar.close()
    return stats


# ------------------------------------------------------------------ commands
def cmd_ls(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        keys = io.list_keys(args.namespace, args.pattern)
        if args.null and not args.json:  # NUL-separated, exactly as stored (for xargs -0)
            sys.stdout.buffer.write(b"".join(key.encode("utf-8", "surrogateescape") + b"\0" for key in keys))
            return 0
        if not args.long:
            emit(args, "\n".join(safe_key(key) for key in keys), keys)
            return 0
        stats = _stat_all(io, args.namespace, keys)
        lines = [f"{s['size']:>12}  {s['crc32']}  {safe_key(s['key'])}" for s in stats]
        emit(args, "\n".join(lines), stats)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        for value in io.load_files(args.namespace, list(args.keys)):
            sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        value = io.load_files(args.namespace, args.key)
    target = args.output or args.key
    with open(target, "wb") as handle:
        handle.write(value)
    emit(args, f"{args.key} -> {target} ({len(value)} bytes)", {"key": args.key, "file": target, "size": len(value)})
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    if args.key and len(args.files) != 1:
        raise InvalidArgumentError("--key names one value: give exactly one file")
    keys, values = [], []
    for path in args.files:
        if path == "-":
            if not args.key:
                raise InvalidArgumentError("reading standard input needs --key NAME")
            values.append(sys.stdin.buffer.read())
        else:
            with open(path, "rb") as handle:
                values.append(handle.read())
        keys.append(args.key or os.path.basename(path))
    with open_backend(args) as io:
        io.save_files(args.namespace, keys, values)
    emit(args, f"stored {len(keys)} key(s) in {args.namespace}", {"stored": keys})
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        keys = _keys(io, args)
        if args.dry_run:
            present = [k for k, there in zip(keys, io.file_exists(args.namespace, keys) if keys else []) if there]
            emit(args, "\n".join([f"would remove {len(present)} key(s) from {args.namespace} (dry run):"] + present),
                 {"would_remove": present, "dry_run": True})
            return 0
        io.remove_files(args.namespace, keys)
    emit(args, f"removed {len(keys)} key(s) from {args.namespace}", {"removed": keys})
    return 0


def cmd_mv(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        if args.pattern:
            keys, new_keys = io.list_keys(args.namespace, args.pattern), None
        elif len(args.keys) == 2 and not args.to:
            keys, new_keys = [args.keys[0]], [args.keys[1]]
        elif args.keys and args.to:
            keys, new_keys = list(args.keys), None
        else:
            raise InvalidArgumentError("use: mv NS OLD NEW, or mv NS KEY... --to NS2, or mv NS --pattern P --to NS2")
        _existing(io, args.namespace)
        if args.dry_run:
            targets = new_keys or keys
            lines = [f"{old} -> {args.to or args.namespace}:{new}" for old, new in zip(keys, targets)]
            emit(args, "\n".join([f"would move {len(keys)} key(s) (dry run):"] + lines),
                 {"would_move": keys, "to": args.to or args.namespace, "dry_run": True})
            return 0
        io.move_keys(args.namespace, keys, new_keys, dest_namespace=args.to)
    emit(args, f"moved {len(keys)} key(s)", {"moved": keys, "to": args.to or args.namespace})
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        if args.keys:
            stats = io.stat_keys(args.namespace, list(args.keys))
            missing = [k for k, s in zip(args.keys, stats) if s is None]
            if missing:
                raise KeyNotFoundError(args.namespace, missing)
            emit(args, "\n".join(f"{s['key']}: {s['size']} bytes, crc32 {s['crc32']}" for s in stats), stats)
            return 0
        stats = _stat_all(io, args.namespace, io.list_keys(args.namespace))
        info = {
            "backend": io.get_type(),
            "namespace": args.namespace,
            "exists": io.namespace_exists(args.namespace),
            "keys": len(stats),
            "bytes": sum(s["size"] for s in stats),
        }
        emit(args, "\n".join(f"{name}: {value}" for name, value in info.items()), info)
    return 0


def cmd_cp(args: argparse.Namespace, mode: str = "copy") -> int:
    source = open_backend(args)
    same_backend = args.to_backend is None or args.to_backend == args.backend
    # The source's options apply to the destination only when it is the same backend.
    destination_options = args.to_option if args.to_option or not same_backend else args.option
    destination = open_io(args.to_backend or args.backend, destination_options)
    with source, destination:
        _existing(source, args.namespace)
        if mode == "mirror" and not args.dry_run and not getattr(args, "yes", False):
            _confirm_mirror(source, destination, args)
        bar = progress_bar(len(source.list_keys(args.namespace, args.pattern)), mode)
        report = sync(source, args.namespace, destination, args.destination, args.pattern, mode, progress=bar.update,
                      dry_run=args.dry_run)
        bar.close()
    would = "would be " if args.dry_run else ""
    text = (f"{report.copied} key(s) {would}copied ({report.bytes} bytes{'' if args.dry_run else ', verified'}), "
            f"{report.skipped} already identical"
            + (f", {report.deleted} {would}deleted" if mode == "mirror" else "")
            + (f", {report.removed_from_source} {would}removed from the source" if mode == "move" else "")
            + ("; dry run: nothing was changed" if args.dry_run else ""))
    emit(args, text, {**report.__dict__, "dry_run": args.dry_run})
    return 0


def _confirm_mirror(source: IO, destination: IO, args: argparse.Namespace) -> None:
    """A mirror that would delete more than half of the destination needs ``--yes`` (a typo must not empty it)."""
    if not destination.namespace_exists(args.destination):
        return
    held = destination.list_keys(args.destination, args.pattern)
    doomed = len(set(held) - set(source.list_keys(args.namespace, args.pattern)))  # listings only: no value is read
    if doomed and doomed * 2 > len(held):
        raise InvalidArgumentError(
            f"this mirror would delete {doomed} of the {len(held)} key(s) in {args.destination!r}; check the "
            "source and destination (--dry-run counts what would change), then pass --yes to do it"
        )


def cmd_sync(args: argparse.Namespace) -> int:
    return cmd_cp(args, "mirror" if args.mirror else "move" if args.move else "copy")


def cmd_archive(args: argparse.Namespace) -> int:
    return cmd_cp(args, "move")


def cmd_verify(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        _existing(io, args.namespace)
        total = len(io.list_keys(args.namespace, args.pattern))
        bar = progress_bar(total, "verify")
        report = verify_keys(io, args.namespace, args.pattern, progress=bar.update)
        bar.close()
    payload = {"checked": report.checked, "checksummed": report.checksummed, "unchecked": report.unchecked,
               "bad": [{"key": k, "reason": r} for k, r in report.bad], "damage": report.damage, "notes": report.notes}
    if not report.checksummed:
        kind = "read (this backend stores no checksums)"
    elif report.unchecked:
        kind = f"read, {max(0, report.checked - report.unchecked)} against checksums stored when written"
    else:
        kind = "checksums verified"
    lines = [f"{report.checked} value(s) {kind}; {len(report.bad)} bad"] + [f"BAD {k}: {r}" for k, r in report.bad]
    lines += [f"DAMAGE {line}" for line in report.damage] + [f"NOTE {line}" for line in report.notes]
    emit(args, "\n".join(lines), payload)
    return EXIT_CORRUPT if report.bad or report.damage else 0


def cmd_reindex(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        report = io.reindex(args.namespace, accept_loss=args.accept_loss)
    payload = {
        "keys": report.keys, "damage": [str(d) for d in report.damage], "zero_gaps": [str(g) for g in report.zero_gaps],
        "tail": str(report.tail) if report.tail else None, "tail_file": report.tail_file, "lost": report.lost,
        "rolled_back": report.rolled_back, "resurrected": report.resurrected, "kept_from_index": report.kept_from_index,
    }
    emit(args, "reindexed " + "\n".join(report.lines()), payload)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    with open_backend(args) as io:
        before, after = io.compact(args.namespace, accept_loss=args.accept_loss)
    emit(args, f"compacted {args.namespace}: {before} -> {after} bytes", {"before": before, "after": after})
    return 0


def add_commands(commands: Any) -> None:
    """Register the data commands on the ``mummi-io`` sub-parser set."""
    def command(name: str, handler: Any, text: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text, aliases=list(aliases))
        add_backend_arguments(parser)
        parser.add_argument("namespace", help="the namespace (simple: a directory; taridx: a tar file; redis: a name)")
        parser.set_defaults(handler=handler)
        return parser

    ls = command("ls", cmd_ls, "list the keys of a namespace (sorted), optionally with size and CRC-32")
    ls.add_argument("pattern", nargs="?", default="*", help="glob pattern (default *)")
    ls.add_argument("-l", "--long", action="store_true", help="show size and CRC-32 of each value")
    ls.add_argument("-0", "--null", action="store_true", help="end each key with NUL, unescaped (for xargs -0); "
                    "otherwise keys with control characters or backslashes are printed escaped")

    cat = command("cat", cmd_cat, "write values to standard output")
    cat.add_argument("keys", nargs="+")
    get = command("get", cmd_get, "save one value to a file")
    get.add_argument("key")
    get.add_argument("--output", help="file to write (default: the key's name)")
    put = command("put", cmd_put, "store files as values (the key is the file name)")
    put.add_argument("files", nargs="+", help="files to store; - reads standard input (needs --key)")
    put.add_argument("--key", help="the key for a single file or for standard input")

    for name, handler, text in [("rm", cmd_rm, "remove keys (missing keys are ignored)"),
                                ("mv", cmd_mv, "rename a key, or move keys to another namespace")]:
        parser = command(name, handler, text)
        parser.add_argument("keys", nargs="*")
        parser.add_argument("--pattern", help="act on the keys matching this glob")
        parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
        if name == "mv":
            parser.add_argument("--to", help="destination namespace (same backend)")

    info = command("info", cmd_info, "namespace summary, or size and CRC-32 of keys", aliases=("stat",))
    info.add_argument("keys", nargs="*")

    for name, handler, text in [
        ("cp", cmd_cp, "copy keys to another namespace or backend, verified (MuMMI's convert_interface_type)"),
        ("sync", cmd_sync, "copy only missing or changed keys (--mirror also deletes extras, --move drains)"),
        ("archive", cmd_archive, "drain keys into an archive, removing each original only once its copy is verified"),
    ]:
        parser = command(name, handler, text)
        parser.add_argument("destination", help="destination namespace")
        parser.add_argument("--pattern", default="*", help="the keys matching this glob (default *)")
        parser.add_argument("--to-backend", help="destination backend (default: the source's)")
        parser.add_argument("--to-option", action="append", metavar="NAME=VALUE",
                            help="destination backend option (default: the source's options, if the same backend)")
        parser.add_argument("--dry-run", action="store_true",
                            help="compare and print what would be copied, deleted or removed; change nothing")
        if name == "sync":
            parser.add_argument("--yes", action="store_true",
                                help="let --mirror delete more than half of the destination's keys")
            how = parser.add_mutually_exclusive_group()
            how.add_argument("--mirror", action="store_true", help="also delete destination keys the source lacks")
            how.add_argument("--move", action="store_true", help="remove each source key once copied and verified")

    verify = command("verify", cmd_verify, "read every value and check its checksum, and report damage to the "
                     "storage itself (taridx: damaged ranges, interrupted writes); exit 4 if anything is bad")
    verify.add_argument("--pattern", default="*", help="verify the keys matching this glob (default *)")

    reindex = command("reindex", cmd_reindex, "taridx: rebuild a namespace's index from its tar, keeping what the "
                      "old index knows; report damage; refuse (exit 4) if the tar has lost values")
    reindex.add_argument("--accept-loss", action="store_true",
                         help="take the tar's state even if it has lost values, holds older ones, or brings back "
                         "deleted keys (the report lists them)")
    compact = command("compact", cmd_compact, "taridx: rewrite a namespace with only its live values; refuse "
                      "(exit 4) if the tar holds damaged ranges or members that are not values, which it would drop")
    compact.add_argument("--accept-loss", action="store_true",
                         help="drop damaged ranges and members that are not values (verify lists them first)")
