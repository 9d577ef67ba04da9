#!/usr/bin/env bash
# Stop every Redis node registered in a mummi_io deployment, after saving
# its data to the deployment directory (a later start reloads it), and
# remove it from the registry. Safe to run twice.
#
#   stop_all_redis_nodes.sh [--dir DIR] [--timeout SECONDS]
set -euo pipefail
# shellcheck source=setup/redis/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir="$(default_redis_dir)"
timeout=30
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

registry="$dir/registry"
if [ ! -s "$registry" ]; then
  say "no Redis deployment registered in $dir; nothing to stop"
  exit 0
fi
mapfile -t nodes < <(mummi_servers list --registry "$registry")
if [ "${#nodes[@]}" -eq 0 ]; then
  say "no Redis nodes registered in $registry; nothing to stop"
  exit 0
fi
password="$(read_password "$dir")"

failed=0
for entry in "${nodes[@]}"; do
  read -r host port <<< "$entry"
  pidfile="$dir/nodes/$host-$port/redis.pid"
  # SHUTDOWN SAVE writes an RDB snapshot (and flushes the AOF) before exiting.
  if ! redis_cli "$host" "$port" "$password" SHUTDOWN SAVE > /dev/null 2>&1; then
    say "node $host:$port did not accept SHUTDOWN (already down?)"
  fi
  deadline=$((SECONDS + timeout))
  while redis_cli "$host" "$port" "$password" PING > /dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      if [ -s "$pidfile" ]; then
        say "node $host:$port is still running after $timeout s; sending SIGTERM"
        kill "$(cat "$pidfile")" 2> /dev/null || true
      fi
      failed=1
      break
    fi
    sleep 0.1
  done
  mummi_servers unregister "$host" "$port" --registry "$registry" > /dev/null
  say "stopped $host:$port (data in $dir/nodes/$host-$port)"
done
[ "$failed" -eq 0 ] || die "some nodes needed SIGTERM; check their logs under $dir/nodes/"
