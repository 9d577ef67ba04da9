#!/usr/bin/env bash
# Start one Redis node of a mummi_io deployment: write its config, register
# "host port" in the deployment's registry, then exec redis-server.
# Normally run by start_all_redis_nodes.sh (locally, or through srun / flux).
#
#   start_redis_node.sh --port PORT --dir DIR [--bind ADDR|auto] [--cluster]
#                       [--no-aof] [--appendfsync always|everysec|no]
#                       [--maxmemory SIZE]
set -euo pipefail
# shellcheck source=setup/redis/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

port=""
dir="$(default_redis_dir)"
bind="127.0.0.1"
cluster="no"
appendonly="yes"
appendfsync="everysec"
maxmemory=""

while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --bind) bind="$2"; shift 2 ;;
    --cluster) cluster="yes"; shift ;;
    --no-aof) appendonly="no"; shift ;;
    --appendfsync) appendfsync="$2"; shift 2 ;;
    --maxmemory) maxmemory="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ "$port" =~ ^[0-9]+$ ]] || die "--port PORT is required"
command -v redis-server >/dev/null 2>&1 || die "$INSTALL_HINT"
password="$(read_password "$dir")"

if [ "$bind" = "auto" ]; then
  # On a compute node: the address other nodes reach us at, never 0.0.0.0.
  bind="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [ -n "$bind" ] || bind="$(hostname -i | awk '{print $1}')"
fi

node_dir="$dir/nodes/$bind-$port"
mkdir -p "$node_dir"
chmod 700 "$node_dir"
conf="$node_dir/redis.conf"
(
  umask 077
  {
    echo "# written by mummi_io start_redis_node.sh; holds the deployment password"
    echo "port $port"
    echo "bind $bind"
    echo "protected-mode yes"
    echo "requirepass $password"
    echo "masterauth $password"
    echo "dir $node_dir"
    echo "daemonize no"
    echo "pidfile $node_dir/redis.pid"
    echo "logfile $node_dir/redis.log"
    echo "appendonly $appendonly"
    echo "appendfsync $appendfsync"
    if [ "$appendonly" = "yes" ]; then echo 'save ""'; else echo "save 900 1 300 10 60 10000"; fi
    if [ -n "$maxmemory" ]; then echo "maxmemory $maxmemory"; fi
    if [ "$cluster" = "yes" ]; then
      echo "cluster-enabled yes"
      echo "cluster-config-file $node_dir/nodes.conf"
      echo "cluster-node-timeout 5000"
    fi
  } > "$conf"
)

mummi_servers register "$bind" "$port" --registry "$dir/registry" >/dev/null
exec redis-server "$conf"
