"""``mummi-io servers``: the Redis servers of a deployment (the registry file)."""

from __future__ import annotations

import argparse
import sys
import os
from typing import Any

from .common import emit


def cmd_servers(args: argparse.Namespace) -> int:
    from ..backends.redis import deployment as redis_servers
    from ..backends.redis.nodes import default_registry_path, resolve_deployment, resolve_password

    registry = args.registry or os.environ.get("MUMMI_REDIS_REGISTRY") or default_registry_path()
    if args.action in ("register", "unregister"):
        if args.action == "register":
            nodes = redis_servers.register(args.host, args.port, registry, cluster=True if args.cluster else None)
        else:
            nodes = redis_servers.unregister(args.host, args.port, registry)
        emit(args, f"{args.action}ed {args.host}:{args.port} ({len(nodes)} node(s) in {registry})",
             {"registry": registry, "nodes": [n.name for n in nodes]})
        return 0
    if args.action == "record-shape":
        warning = redis_servers.record_shape(registry, args.id)
        if warning:
            emit(args, f"warning: {warning}", {"recorded": False, "warning": warning})
            return 1
        emit(args, f"recorded the node list of {registry} on every node", {"recorded": True})
        return 0
    if args.action == "rebalance":
        moved = redis_servers.rebalance(registry)
        emit(args, f"moved {moved} Redis key(s); every node now records the node list of {registry}", {"moved": moved})
        return 0
    if args.action == "wait":
        results = redis_servers.wait_until_ready(registry, args.count, args.timeout)
        emit(args, f"{len(results)} Redis node(s) ready", {"ready": [r.node.name for r in results]})
        return 0
    if args.registry:
        nodes, cluster = redis_servers.registered(registry)
        source = f"the registry {registry}"
    else:  # the nodes get_io("redis") would use: $MUMMI_REDIS_NODES, the registry, MuMMI's all_servers.txt
        deployment = resolve_deployment()
        nodes, cluster, source = list(deployment.nodes), deployment.cluster, deployment.source
        registry = deployment.registry or registry
    if args.action == "list":
        if not args.json:  # where the nodes came from, off the parseable output
            print(f"mummi-io: nodes from {source}", file=sys.stderr)
        emit(args, "\n".join(f"{n.host} {n.port}" for n in nodes),
             {"registry": registry, "source": source, "cluster": cluster,
              "nodes": [{"host": n.host, "port": n.port} for n in nodes]})
        return 0
    results = redis_servers.ping(nodes, resolve_password(None, None, registry), check_shape=not cluster)
    lines = [
        f"{r.node.name:<28} ok    {r.latency_ms:7.2f} ms  {r.used_memory}" if r.ok
        else f"{r.node.name:<28} {'WRONG' if r.latency_ms is not None else 'DOWN '} {r.error}"
        for r in results
    ]
    emit(args, "\n".join(lines), [
        {"node": r.node.name, "ok": r.ok, "latency_ms": r.latency_ms, "used_memory": r.used_memory, "error": r.error}
        for r in results
    ])
    return 0 if all(r.ok for r in results) else 1


def add_commands(commands: Any) -> None:
    """Register ``servers`` and its actions."""
    servers = commands.add_parser("servers", help="the Redis servers of a deployment (the registry file)")
    servers.add_argument("--registry", help="registry file (default: $MUMMI_REDIS_REGISTRY or $MUMMI_REDIS_DIR/registry)")
    actions = servers.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="print the registered nodes, one 'host port' per line")
    actions.add_parser("ping", help="PING every node: latency and memory; exit 1 if any is down")
    for name, text in [("register", "add a node to the registry"), ("unregister", "remove a node from the registry")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("host")
        action.add_argument("port", type=int)
        if name == "register":
            action.add_argument("--cluster", action="store_true", help="mark the deployment as a Redis Cluster")
    shape = actions.add_parser("record-shape", help="record the registry's node list on every node (launch scripts); "
                               "exit 1 if a node records another node set")
    shape.add_argument("--id", help="the deployment id to record beside it")
    actions.add_parser("rebalance", help="move each shard to its node under the registry's node list, then record "
                       "that list (after adding a node)")
    waiting = actions.add_parser("wait", help="wait until COUNT nodes are registered and answer PING")
    waiting.add_argument("count", type=int)
    waiting.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    servers.set_defaults(handler=cmd_servers)
