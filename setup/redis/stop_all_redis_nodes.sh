#!/usr/bin/env bash
# Stop every Redis node registered in a mummi_io deployment, after saving
# its data to the deployment directory (a later start reloads it), and
# remove it from the registry. Safe to run twice.
#
#   stop_all_redis_nodes.sh [--dir DIR] [--timeout SECONDS]
#
# A node is shut down only once it proves to be this deployment's: it takes
# the deployment's password and serves the node's own directory under DIR
# (CONFIG GET dir), and where it records a deployment id, that id is DIR's.
# Anything else listening on a registered port (a stale entry whose port now
# belongs to another server) is left running, with a warning, and the stale
# entry is removed; so is an entry where nothing answers.
set -euo pipefail
# shellcheck source=setup/redis/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for argument in "$@"; do
  case "$argument" in -h|--help) usage "$0"; exit 0 ;; esac
done

dir="$(default_redis_dir)"
timeout=30
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) need_value "$1" "$#"; check_path --dir "$2"; dir="$(absolute_path "$2")"; shift 2 ;;
    --timeout) need_value "$1" "$#"; check_integer --timeout "$2" 1 86400; timeout="$((10#$2))"; shift 2 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# The directory, also when it comes from $MUMMI_REDIS_DIR or $HOME, is checked like --dir.
check_path "the deployment directory" "$dir"
dir="$(absolute_path "$dir")"
registry="$dir/registry"
if [ ! -s "$registry" ]; then
  say "no Redis deployment registered in $dir; nothing to stop"
  exit 0
fi
command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: install it (Debian/Ubuntu: apt-get install redis-tools)"
check_python
listed="$(registered_nodes "$registry")" || exit 1
nodes=()
[ -z "$listed" ] || mapfile -t nodes <<< "$listed"
if [ "${#nodes[@]}" -eq 0 ]; then
  say "no Redis nodes registered in $registry; nothing to stop"
  exit 0
fi
password="$(read_password "$dir")"
deployment_id="$(cat "$dir/deployment-id" 2>/dev/null || true)"

failed=0
for entry in "${nodes[@]}"; do
  read -r host port <<< "$entry"
  node_dir="$(node_dir_of "$dir" "$host" "$port")"
  status=0
  why="$(node_is_ours "$host" "$port" "$password" "$node_dir")" || status=$?
  if [ "$status" -eq 0 ] && [ -n "$deployment_id" ]; then
    recorded="$(redis_cli "$host" "$port" "$password" HGET mio:deployment id)"
    if [[ "$recorded" =~ ^[0-9a-f]{32}$ ]] && [ "$recorded" != "$deployment_id" ]; then
      why="it records another deployment id ($recorded)"
      status=1
    fi
  fi
  if [ "$status" -eq 3 ]; then
    say "node $host:$port $why: it stays registered; run this again in a moment"
    failed=1
    continue
  fi
  if [ "$status" -eq 2 ]; then
    say "node $host:$port is not running; removed from the registry (data in $node_dir)"
    mummi_servers unregister --registry "$registry" -- "$host" "$port" > /dev/null
    continue
  fi
  if [ "$status" -ne 0 ]; then
    say "warning: $host:$port is not a node of this deployment ($why): left running, its stale entry removed from the registry"
    mummi_servers unregister --registry "$registry" -- "$host" "$port" > /dev/null
    continue
  fi
  # SHUTDOWN SAVE writes an RDB snapshot (and flushes the AOF) before exiting.
  reply="$(redis_cli "$host" "$port" "$password" SHUTDOWN SAVE)"
  if [ -n "$reply" ] && [[ "$reply" != *"connect"* ]]; then
    say "node $host:$port refused SHUTDOWN SAVE: $reply"
  fi
  deadline=$((SECONDS + timeout))
  terminated="no"
  # Stopped means nothing answers: a node whose save failed answers PING with MISCONF, a busy one BUSY.
  while node_answers "$host" "$port" "$password"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      pid="$(cat "$node_dir/redis.pid" 2> /dev/null || true)"
      if [ "$terminated" = "no" ] && [[ "$pid" =~ ^[0-9]+$ ]] && grep -qa redis-server "/proc/$pid/cmdline" 2> /dev/null; then
        say "node $host:$port is still running after $timeout s; sending SIGTERM"
        kill "$pid" 2> /dev/null || true
        terminated="yes"
        deadline=$((SECONDS + 10))
        continue
      fi
      break
    fi
    sleep 0.1
  done
  if node_answers "$host" "$port" "$password"; then
    # Still serving (a save that keeps failing, a node on another host): it stays registered.
    say "node $host:$port is still running, with data it could not save; it stays registered: see $node_dir/redis.log, fix the cause (a full disk?) and run this again"
    failed=1
    continue
  fi
  mummi_servers unregister --registry "$registry" -- "$host" "$port" > /dev/null
  say "stopped $host:$port (data in $node_dir)"
done
[ "$failed" -eq 0 ] || die "some nodes did not stop; they are still registered (see the messages above)"
