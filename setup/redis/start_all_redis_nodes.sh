#!/usr/bin/env bash
# Start N password-protected Redis nodes for a mummi_io campaign and return
# once every node answers PING. Clients find them through the registry file
# (source load_redis_env.sh, or set MUMMI_REDIS_DIR).
#
#   start_all_redis_nodes.sh N [--launcher local|slurm|flux] [--port BASE]
#       [--dir DIR] [--bind ADDR] [--no-aof] [--appendfsync POLICY]
#       [--maxmemory SIZE] [--cluster [--replicas R] [--bus-port BASE]]
#       [--timeout SECONDS] [--dry-run]
#
# --launcher  local: background processes here (default without a scheduler);
#             slurm: one srun step per node; flux: one flux submit per node
# --port      node i listens on BASE+i (default 6400)
# --dir       deployment directory: registry, password, node data
#             (default $MUMMI_REDIS_DIR or ~/.mummi_io/redis)
# --bind      address to listen on (default 127.0.0.1 locally, the node's own
#             address under slurm/flux; 0.0.0.0 only if you ask for it)
# --no-aof    no append-only file (RDB snapshots only); --appendfsync sets
#             the AOF fsync policy (default everysec)
# --maxmemory memory limit per node (e.g. 4gb)
# --cluster   build a Redis Cluster; --replicas R replicas per master;
#             --bus-port BASE: node i's cluster bus on BASE+i (Redis 7;
#             default: its port + 10000)
# --timeout   seconds to wait for every node (default 60)
# --dry-run   print the commands instead of running them
#
# Every option is checked before anything runs. A node that cannot start is
# reported with the reason from its log ("Address already in use"), is not
# registered, and the nodes that did start are stopped again; the script
# exits 1. Stop the deployment with stop_all_redis_nodes.sh --dir DIR.
# Restart one node that stopped (same --dir, its --port and --bind):
#   start_redis_node.sh --port PORT --dir DIR --detach
# (under Slurm, on the node's host, without --detach:
#   srun --nodes=1 --ntasks=1 --overlap -w HOST start_redis_node.sh --port PORT --dir DIR --bind auto &)
#
# MuMMI's job scripts source this file (`source start_all_redis_nodes.sh N`):
# then the work runs in a child bash (its shell options and its exit stay
# there), the caller gets its status from `return`, and on success the
# variables clients read are exported (see load_redis_env.sh), with
# MUMMI_REDIS_NNODES=N as MuMMI exports it.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  _mummi_io_dir=""
  _mummi_io_previous=""
  for _mummi_io_arg in "$@"; do
    [ "$_mummi_io_previous" = "--dir" ] && _mummi_io_dir="$_mummi_io_arg"
    _mummi_io_previous="$_mummi_io_arg"
  done
  if bash "${BASH_SOURCE[0]}" "$@"; then
    # shellcheck source=setup/redis/load_redis_env.sh
    # Always with an argument: sourced without one, it would see this script's "$@" (N) as its DIR.
    source "$(dirname "${BASH_SOURCE[0]}")/load_redis_env.sh" "${_mummi_io_dir:-${MUMMI_REDIS_DIR:-$HOME/.mummi_io/redis}}"
    export MUMMI_REDIS_NNODES="${1:-}"
    unset _mummi_io_dir _mummi_io_previous _mummi_io_arg
    return 0
  else
    _mummi_io_status=$?
    unset _mummi_io_dir _mummi_io_previous _mummi_io_arg
    return "$_mummi_io_status"
  fi
fi
set -euo pipefail
# shellcheck source=setup/redis/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# --help answers in any position (before N is checked).
for argument in "$@"; do
  case "$argument" in -h|--help) usage "$0"; exit 0 ;; esac
done

count="${1:-}"
[[ "$count" =~ ^[1-9][0-9]{0,3}$ ]] || die "usage: start_all_redis_nodes.sh N [options], N from 1 to 9999 (see --help)"
count="$((10#$count))"
shift

launcher=""
base_port=6400
dir="$(default_redis_dir)"
bind=""
node_options=()
cluster="no"
replicas=0
bus_base=""
timeout=60
dry_run="no"

while [ $# -gt 0 ]; do
  case "$1" in
    --launcher) need_value "$1" "$#"; check_choice --launcher "$2" local slurm flux; launcher="$2"; shift 2 ;;
    --port) need_value "$1" "$#"; check_port --port "$2"; base_port="$((10#$2))"; shift 2 ;;
    --dir) need_value "$1" "$#"; check_path --dir "$2"; dir="$(absolute_path "$2")"; shift 2 ;;
    --bind) need_value "$1" "$#"; check_address --bind "$2"; bind="$2"; shift 2 ;;
    --no-aof) node_options+=(--no-aof); shift ;;
    --appendfsync) need_value "$1" "$#"; check_choice --appendfsync "$2" always everysec no; node_options+=(--appendfsync "$2"); shift 2 ;;
    --maxmemory) need_value "$1" "$#"; check_size --maxmemory "$2"; node_options+=(--maxmemory "$2"); shift 2 ;;
    --cluster) cluster="yes"; node_options+=(--cluster); shift ;;
    --bus-port) need_value "$1" "$#"; check_port --bus-port "$2"; bus_base="$((10#$2))"; shift 2 ;;
    --replicas) need_value "$1" "$#"; check_integer --replicas "$2" 0 16; replicas="$((10#$2))"; shift 2 ;;
    --timeout) need_value "$1" "$#"; check_integer --timeout "$2" 1 86400; timeout="$((10#$2))"; shift 2 ;;
    --dry-run) dry_run="yes"; shift ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# The directory, also when it comes from $MUMMI_REDIS_DIR or $HOME, is checked like --dir.
check_path "the deployment directory" "$dir"
dir="$(absolute_path "$dir")"
if [ -z "$launcher" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then launcher="slurm"
  elif [ -n "${FLUX_URI:-}" ]; then launcher="flux"
  else launcher="local"
  fi
fi
if [ -z "$bind" ]; then
  if [ "$launcher" = "local" ]; then bind="127.0.0.1"; else bind="auto"; fi
fi
[ "$((base_port + count - 1))" -le 65535 ] || die "ports $base_port to $((base_port + count - 1)) do not fit below 65536: lower --port"
if [ "$cluster" = "yes" ]; then
  [ -n "$bus_base" ] || bus_base=$((base_port + 10000))
  [ "$((bus_base + count - 1))" -le 65535 ] \
    || die "cluster bus ports $bus_base to $((bus_base + count - 1)) do not fit below 65536: lower --port or set --bus-port"
elif [ -n "$bus_base" ]; then
  die "--bus-port is for --cluster"
fi
if [ "$cluster" = "yes" ] && [ "$count" -lt $((3 * (1 + replicas))) ]; then
  die "a cluster with $replicas replica(s) per master needs at least $((3 * (1 + replicas))) nodes"
fi
if [ "$dry_run" = "no" ]; then
  command -v redis-server >/dev/null 2>&1 || [ "$launcher" != "local" ] || die "$INSTALL_HINT"
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: install it with redis-server (Debian/Ubuntu: apt-get install redis-tools)"
  check_python
fi

registry="$dir/registry"
run() {
  if [ "$dry_run" = "yes" ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

if [ "$dry_run" = "no" ]; then
  if [ -d "$dir" ]; then
    # An existing directory keeps its mode (it may be shared on purpose); the secrets inside are 0600/0700.
    mode="$(stat -c %a "$dir")"
    if [ $((8#$mode & 8#044)) -ne 0 ]; then
      say "warning: $dir is readable by group or others (mode $mode); the password and node data inside are not, but consider chmod 700 $dir"
    fi
  else
    (umask 077; mkdir -p "$dir")
  fi
  # One start at a time per deployment (fd 9 is closed for the nodes, so they do not hold it).
  exec 9> "$dir/.start.lock"
  flock -n 9 || die "another start_all_redis_nodes.sh is starting the deployment in $dir; wait for it"
  if [ ! -s "$dir/password" ]; then
    # One random password per deployment, readable by its owner only.
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/password")  # 32 bytes, 64 hex digits
  fi
  chmod 600 "$dir/password"
  if [ ! -s "$dir/deployment-id" ]; then
    (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$dir/deployment-id")
  fi
  listed=""
  if [ -s "$registry" ]; then listed="$(registered_nodes "$registry")" || exit 1; fi
  if [ -n "$listed" ]; then
    die "a deployment is already registered in $registry; stop it with stop_all_redis_nodes.sh --dir $dir, or use another --dir"
  fi
  # Outcomes of an earlier start; each node writes its own again.
  rm -f "$dir"/nodes/*/start-failed "$dir"/nodes/*/ready
fi

node_script="$REDIS_SCRIPTS_DIR/start_redis_node.sh"
launched=()  # node scripts (local) or srun steps (slurm) started here
# Nodes that did start are of no use without the others: on a failure, or if this script is
# interrupted, stop them. A node script (or its srun step) stops its node on SIGTERM, started or not;
# stop_all then clears the registry of what had registered.
stop_launched() {
  trap - INT TERM
  # The shell's own job table too: a signal can land after a node's fork and before launched+=($!).
  mapfile -t children < <(jobs -p)
  launched+=("${children[@]}")
  if [ "${#launched[@]}" -gt 0 ]; then
    kill -TERM "${launched[@]}" 2> /dev/null || true
    wait "${launched[@]}" 2> /dev/null || true
  fi
  bash "$REDIS_SCRIPTS_DIR/stop_all_redis_nodes.sh" --dir "$dir" > /dev/null 2>&1 || true
}
[ "$dry_run" = "yes" ] || trap 'stop_launched; die "interrupted: the nodes started so far were stopped"' INT TERM
for ((i = 0; i < count; i++)); do
  port=$((base_port + i))
  node=("$node_script" --port "$port" --dir "$dir" --bind "$bind" "${node_options[@]}")
  [ "$cluster" = "no" ] || [ "$bus_base" = "$((base_port + 10000))" ] || node+=(--bus-port "$((bus_base + i))")
  case "$launcher" in
    local)
      if [ "$dry_run" = "yes" ]; then run "${node[@]}"
      else nohup "${node[@]}" > "$dir/launch-$port.log" 2>&1 < /dev/null 9>&- & launched+=($!)
      fi ;;
    slurm)
      # srun expands % in --output: a literal one is %%.
      step=(srun --nodes=1 --ntasks=1 --overlap --output="${dir//%/%%}/launch-%N-$port.log" "${node[@]}")
      if [ "$dry_run" = "yes" ]; then run "${step[@]}"; else "${step[@]}" 9>&- & launched+=($!); fi ;;
    flux) run flux submit --nodes=1 --ntasks=1 --output="$dir/launch-$port.log" "${node[@]}" ;;
  esac
done
if [ "$dry_run" = "yes" ]; then
  run "$MUMMI_IO_PYTHON" "$MUMMI_REPO_DIR/scripts/mummi_redis.py" wait "$count" --timeout "$timeout" --registry "$registry"
  if [ "$cluster" = "yes" ]; then
    echo "redis-cli --cluster create HOST:PORT... --cluster-replicas $replicas --cluster-yes"
  fi
  exit 0
fi

if ! mummi_servers wait "$count" --timeout "$timeout" --registry "$registry" >/dev/null; then
  stop_launched
  die "not every node came up (see the message above and $dir/launch-*.log); the nodes that did were stopped"
fi

if [ "$cluster" = "yes" ]; then
  password="$(read_password "$dir")"
  listed="$(registered_nodes "$registry")" || exit 1
  mapfile -t nodes < <(printf '%s\n' "$listed" | awk 'NF == 2 {print $1 ":" $2}')
  first_host="${nodes[0]%:*}"
  first_port="${nodes[0]##*:}"
  if redis_cli "$first_host" "$first_port" "$password" CLUSTER INFO | grep -q "cluster_state:ok"; then
    say "the cluster was reloaded from its saved configuration"
  else
    for node in "${nodes[@]}"; do
      host="${node%:*}"
      bus=$((bus_base + ${node##*:} - base_port))
      if ! (exec 3<>"/dev/tcp/$host/$bus") 2>/dev/null; then
        die "cluster bus port $host:$bus is not reachable (it must be open between nodes; a firewall here makes 'redis-cli --cluster create' hang)"
      fi
    done
    REDISCLI_AUTH="$password" redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes > "$dir/cluster-create.log" 2>&1 \
      || die "redis-cli --cluster create failed; see $dir/cluster-create.log"
    deadline=$((SECONDS + timeout))
    until redis_cli "$first_host" "$first_port" "$password" CLUSTER INFO | grep -q "cluster_state:ok"; do
      [ "$SECONDS" -lt "$deadline" ] || die "the cluster did not reach cluster_state:ok within $timeout s"
      sleep 0.2
    done
  fi
  mummi_servers register --cluster --registry "$registry" -- "$first_host" "$first_port" >/dev/null
else
  # Clients given only some of these nodes are refused from their first command (docs/redis.md).
  if ! shape_message="$(mummi_servers record-shape --id "$(cat "$dir/deployment-id")" --registry "$registry" 2>&1)"; then
    say "$shape_message"
  fi
fi

trap - INT TERM
say "$count Redis node(s) ready ($launcher$([ "$cluster" = "yes" ] && echo ", cluster")); registry: $registry"
say "clients: source $(printf '%q' "$REDIS_SCRIPTS_DIR/load_redis_env.sh") $(printf '%q' "$dir")"
