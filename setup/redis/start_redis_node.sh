#!/usr/bin/env bash
# Start one Redis node of a mummi_io deployment: write its config, start
# redis-server, and once the node answers with this deployment's password
# from its own directory (not some other server on the port), register
# "host port" in the deployment's registry. Normally run by
# start_all_redis_nodes.sh (locally, or through srun / flux); run it yourself
# with --detach to restart one node that stopped.
#
#   start_redis_node.sh --port PORT --dir DIR [--bind ADDR|auto]
#                       [--cluster [--bus-port PORT]] [--no-aof] [--appendfsync always|everysec|no]
#                       [--maxmemory SIZE] [--timeout SECONDS] [--detach]
#
# --detach   start the node in the background, wait until it is ready (or
#            report why it failed), and return: the command to restart a node
# A node that fails to start writes the reason to nodes/HOST-PORT/start-failed
# and exits 1; the launch script reports it at once.
set -euo pipefail
# shellcheck source=setup/redis/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for argument in "$@"; do
  case "$argument" in -h|--help) usage "$0"; exit 0 ;; esac
done

port=""
dir="$(default_redis_dir)"
bind="127.0.0.1"
cluster="no"
appendonly="yes"
appendfsync="everysec"
maxmemory=""
bus_port=""
timeout=60
detach="no"
given=()  # the storage options given on this command line (the others come from the node's saved config)
arguments=("$@")

while [ $# -gt 0 ]; do
  case "$1" in
    --port) need_value "$1" "$#"; check_port --port "$2"; port="$2"; shift 2 ;;
    --dir) need_value "$1" "$#"; check_path --dir "$2"; dir="$(absolute_path "$2")"; shift 2 ;;
    --bind) need_value "$1" "$#"; [ "$2" = "auto" ] || check_address --bind "$2"; bind="$2"; shift 2 ;;
    --cluster) cluster="yes"; given+=(cluster); shift ;;
    --bus-port) need_value "$1" "$#"; check_port --bus-port "$2"; bus_port="$((10#$2))"; given+=(bus_port); shift 2 ;;
    --no-aof) appendonly="no"; given+=(appendonly); shift ;;
    --appendfsync) need_value "$1" "$#"; check_choice --appendfsync "$2" always everysec no; appendfsync="$2"; given+=(appendfsync); shift 2 ;;
    --maxmemory) need_value "$1" "$#"; check_size --maxmemory "$2"; maxmemory="$2"; given+=(maxmemory); shift 2 ;;
    --timeout) need_value "$1" "$#"; check_integer --timeout "$2" 1 86400; timeout="$((10#$2))"; shift 2 ;;
    --detach) detach="yes"; shift ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# The directory, also when it comes from $MUMMI_REDIS_DIR or $HOME, is checked like --dir.
check_path "the deployment directory" "$dir"
dir="$(absolute_path "$dir")"
[ -n "$port" ] || die "--port PORT is required"
port="$((10#$port))"
command -v redis-server >/dev/null 2>&1 || die "$INSTALL_HINT"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: install it with redis-server (Debian/Ubuntu: apt-get install redis-tools)"
check_python
password="$(read_password "$dir")"

if [ "$bind" = "auto" ]; then
  # On a compute node: the address other nodes reach us at, never 0.0.0.0.
  bind="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [ -n "$bind" ] || bind="$(hostname -i | awk '{print $1}')"
  check_address "the address of $(hostname)" "$bind"
fi

node_dir="$(node_dir_of "$dir" "$bind" "$port")"
conf="$node_dir/redis.conf"
if [ -d "$node_dir" ] && node_is_ours "$bind" "$port" "$password" "$node_dir" > /dev/null; then
  message="node $bind:$port of this deployment is already running (registered or not); stop it first: REDISCLI_AUTH=\$(cat $dir/password) redis-cli -h $bind -p $port SHUTDOWN SAVE"
  echo "$message" > "$node_dir/start-failed"
  die "$message"
fi

# A node keeps its saved configuration: options not given now come from its redis.conf (a restart
# with fewer options must not switch its persistence), and switching AOF or cluster mode is refused
# (with AOF switched on, Redis would ignore the node's dump.rdb and start empty).
given_option() {
  local option
  for option in "${given[@]}"; do [ "$option" = "$1" ] && return 0; done
  return 1
}
saved() {
  sed -n "s/^$1 //p" "$conf" | tail -n 1 | tr -d '"'
}
if [ -s "$conf" ]; then
  saved_aof="$(saved appendonly)"
  saved_cluster="$(saved cluster-enabled)"
  saved_cluster="${saved_cluster:-no}"
  if ! given_option appendonly; then
    appendonly="${saved_aof:-$appendonly}"
  elif [ -n "$saved_aof" ] && [ "$saved_aof" != "$appendonly" ]; then
      message="node $bind:$port was started with appendonly $saved_aof and holds its data that way; starting it with appendonly $appendonly would start it without that data: $([ "$saved_aof" = "no" ] && echo "pass --no-aof" || echo "leave out --no-aof")"
      echo "$message" > "$node_dir/start-failed"
      die "$message"
  fi
  if [ "$saved_cluster" != "$cluster" ]; then
    message="node $bind:$port was started with cluster-enabled $saved_cluster; it cannot be started with cluster-enabled $cluster: $([ "$saved_cluster" = "yes" ] && echo "pass --cluster" || echo "leave out --cluster")"
    echo "$message" > "$node_dir/start-failed"
    die "$message"
  fi
  given_option appendfsync || appendfsync="$(saved appendfsync)"
  given_option maxmemory || maxmemory="$(saved maxmemory)"
  given_option bus_port || bus_port="$(saved cluster-port)"
  appendfsync="${appendfsync:-everysec}"
fi

if [ "$detach" = "yes" ]; then
  # Run this script again in the background, without --detach, and report its outcome.
  mkdir -p "$dir"
  launch_log="$dir/launch-$port.log"
  rm -f "$node_dir/start-failed" "$node_dir/ready"
  detached=()
  for argument in "${arguments[@]}"; do [ "$argument" = "--detach" ] || detached+=("$argument"); done
  nohup bash "$0" "${detached[@]}" > "$launch_log" 2>&1 < /dev/null &
  child=$!
  deadline=$((SECONDS + timeout + 5))
  until [ -e "$node_dir/ready" ]; do
    if ! kill -0 "$child" 2>/dev/null; then
      [ -e "$node_dir/ready" ] && break
      die "node $bind:$port did not start: $(cat "$node_dir/start-failed" 2>/dev/null || tail -n 3 "$launch_log")"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "node $bind:$port is not ready after $timeout s; see $launch_log"
    sleep 0.1
  done
  say "node $bind:$port is running (registered in $dir/registry; log $node_dir/redis.log)"
  exit 0
fi

(umask 077; mkdir -p "$node_dir")
chmod 700 "$node_dir"
rm -f "$node_dir/start-failed" "$node_dir/ready"
(
  umask 077
  {
    echo "# written by mummi_io start_redis_node.sh; holds the deployment password"
    echo "port $port"
    echo "bind $bind"
    echo "protected-mode yes"
    echo "requirepass $(conf_quote "$password")"
    echo "masterauth $(conf_quote "$password")"
    echo "dir $(conf_quote "$node_dir")"
    echo "daemonize no"
    echo "pidfile $(conf_quote "$node_dir/redis.pid")"
    echo "logfile $(conf_quote "$node_dir/redis.log")"
    echo "appendonly $appendonly"
    echo "appendfsync $appendfsync"
    if [ "$appendonly" = "yes" ]; then echo 'save ""'; else echo "save 900 1 300 10 60 10000"; fi
    if [ -n "$maxmemory" ]; then echo "maxmemory $maxmemory"; fi
    if [ "$cluster" = "yes" ]; then
      echo "cluster-enabled yes"
      echo "cluster-config-file $(conf_quote "$node_dir/nodes.conf")"
      echo "cluster-node-timeout 5000"
      if [ -n "$bus_port" ]; then echo "cluster-port $bus_port"; fi
    fi
  } > "$conf"
)

# The reason a node did not start: the warnings its log gained, or what redis-server printed.
log="$node_dir/redis.log"
log_offset="$(stat -c %s "$log" 2>/dev/null || echo 0)"
failure_reason() {
  local reason
  reason="$(tail -c "+$((log_offset + 1))" "$log" 2>/dev/null | grep ' # ' | sed 's/^.* # //' | grep -Ev 'Configuration loaded|oO0OoO0OoO0Oo|Redis version=|overcommit' | tail -n 3 | paste -sd ';' - || true)"
  [ -n "$reason" ] || reason="$(grep -v '^$' "$node_dir/redis.out" 2>/dev/null | tail -n 3 | paste -sd ';' - || true)"
  echo "${reason:-redis-server exited without a message}"
}
fail() {
  echo "$1" > "$node_dir/start-failed"
  die "node $bind:$port did not start: $1 (log: $log)"
}

redis-server "$conf" > "$node_dir/redis.out" 2>&1 &
pid=$!
# Stopping this script (srun cancelled, Ctrl-C) stops the node, which saves its data; so does any
# exit of this script (a failed registration, an error): no node is ever left running unregistered.
trap 'kill -TERM "$pid" 2> /dev/null || true' TERM INT HUP
trap 'kill -TERM "$pid" 2> /dev/null && wait "$pid" 2> /dev/null; true' EXIT

# Ready means: our process answers, with our password, from our directory.
deadline=$((SECONDS + timeout))
# (Queried only once our process logged that it listens: a squatter on the port could hang redis-cli.)
until kill -0 "$pid" 2> /dev/null \
    && tail -c "+$((log_offset + 1))" "$log" 2> /dev/null | grep -q "Ready to accept connections" \
    && node_is_ours "$bind" "$port" "$password" "$node_dir" > /dev/null \
    && [ "$(redis_cli "$bind" "$port" "$password" INFO server | sed -n 's/^process_id://p')" = "$pid" ]; do
  if ! kill -0 "$pid" 2> /dev/null; then
    wait "$pid" || true
    reason="$(failure_reason)"
    case "$reason" in *"Address already in use"*) reason="$reason (another program holds the port: pick another --port)" ;; esac
    fail "$reason"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    kill -TERM "$pid" 2> /dev/null || true
    fail "no answer within $timeout s ($(failure_reason))"
  fi
  sleep 0.1
done

if ! registration="$(mummi_servers register --registry "$dir/registry" -- "$bind" "$port" 2>&1)"; then
  fail "it started, but could not be registered, so it was stopped: $registration"
fi
echo "$pid" > "$node_dir/ready"
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2> /dev/null; do  # a trapped signal interrupts `wait`: wait for the node itself
  wait "$pid" || status=$?
done
rm -f "$node_dir/ready"
exit "$status"
