# shellcheck shell=bash
# Shared by the Redis launch scripts: defaults, option checks, error reporting,
# the Python helper, and the test that a node is ours.

REDIS_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MUMMI_REPO_DIR="$(cd "$REDIS_SCRIPTS_DIR/../.." && pwd)"
MUMMI_IO_PYTHON="${MUMMI_IO_PYTHON:-python3}"
# A deployment is named by --dir alone: what a client environment (or an earlier
# `source load_redis_env.sh`) exported for another deployment must not leak into
# the helpers these scripts run (a stale password would fail every PING).
unset MUMMI_REDIS_PASSWORD MUMMI_REDIS_PASSWORD_FILE MUMMI_REDIS_REGISTRY MUMMI_REDIS_NODES MUMMI_REDIS_NNODES
# shellcheck disable=SC2034  # used by the scripts that source this file
INSTALL_HINT="redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; Spack: spack install redis) or put it on PATH"

die() {
  echo "mummi_io redis: error: $*" >&2
  exit 1
}

say() {
  echo "mummi_io redis: $*" >&2
}

# The comment block at the top of a script (after #!), as its --help.
usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$1"
}

default_redis_dir() {
  echo "${MUMMI_REDIS_DIR:-$HOME/.mummi_io/redis}"
}

# ------------------------------------------------------------------ option checks
# Every option is checked here before it reaches arithmetic, a command line or
# redis.conf: bash evaluates `$(( ))` operands as expressions (a --port of
# 'a[$(cmd)]' would run cmd), and a newline in a value would add config lines.

# A value as shown in a message: quoted and escaped by bash (a newline shows as $'\n').
shown() {
  printf '%q' "$1"
}

# The option's value, or an error if the option is last on the line.
need_value() {
  [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

check_integer() {  # NAME VALUE MIN MAX
  if ! [[ "$2" =~ ^[0-9]{1,9}$ ]] || [ "$((10#$2))" -lt "$3" ] || [ "$((10#$2))" -gt "$4" ]; then
    die "$1 must be a whole number from $3 to $4, not $(shown "$2")"
  fi
}

check_port() {  # NAME VALUE
  check_integer "$1" "$2" 1 65535
}

# A Redis memory size: digits with an optional unit b, k, kb, m, mb, g, gb (any case).
check_size() {
  [[ "$2" =~ ^[0-9]{1,15}([bB]|[kKmMgG][bB]?)?$ ]] || die "$1 must be a size such as 4gb, 512mb or 1000000, not $(shown "$2")"
}

check_choice() {  # NAME VALUE CHOICE...
  local name="$1" value="$2" choice
  shift 2
  for choice in "$@"; do [ "$value" = "$choice" ] && return 0; done
  die "$name must be one of: $*; not $(shown "$value")"
}

# An IPv4 or IPv6 address, or a host name (one address: Redis listens on it).
check_address() {
  local name="$1" value="$2" part
  if [[ "$value" =~ ^[0-9.]+$ ]] && ! [[ "$value" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
    die "$name: $(shown "$value") is not an IPv4 address (a.b.c.d; 0.0.0.0 listens on every interface)"
  elif [[ "$value" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
    IFS=. read -r -a parts <<< "$value"
    for part in "${parts[@]}"; do [ "$((10#$part))" -le 255 ] || die "$name: $(shown "$value") is not an IPv4 address"; done
  elif [[ "$value" == *:* ]]; then
    [[ "$value" =~ ^[0-9A-Fa-f:.]{2,45}$ ]] || die "$name: $(shown "$value") is not an IPv6 address"
  else
    [[ "$value" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] || die "$name must be an address or host name, not $(shown "$value")"
  fi
}

# A directory path: no control characters (a newline would end a redis.conf line) and no
# glob characters (redis-server reads its config file's path as a glob pattern: with
# '[', '*' or '?' in it, it would silently start with its defaults, without a password).
check_path() {
  [ -n "$2" ] || die "$1 must not be empty"
  [[ "$2" != *[[:cntrl:]]* ]] || die "$1 must not contain control characters (newline, tab): $(shown "$2")"
  [[ "$2" != *[\[\]\*\?]* ]] || die "$1 must not contain the glob characters [ ] * ? (redis-server would read its config path as a pattern): $(shown "$2")"
}

# An absolute path (redis-server changes into its dir before opening its log: a relative one breaks).
absolute_path() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "$1" ;;
  esac
}

# A value as one redis.conf argument: in double quotes, with \ and " escaped.
conf_quote() {
  local value="${1//\\/\\\\}"
  printf '"%s"' "${value//\"/\\\"}"
}

# ---------------------------------------------------------------------- helpers
# Run `mummi-io servers ...` through the checkout's scripts/mummi_redis.py.
mummi_servers() {
  "$MUMMI_IO_PYTHON" "$MUMMI_REPO_DIR/scripts/mummi_redis.py" "$@"
}

# Fail early, in one line, when $MUMMI_IO_PYTHON cannot run the helper.
check_python() {
  command -v "$MUMMI_IO_PYTHON" >/dev/null 2>&1 \
    || die "MUMMI_IO_PYTHON=$MUMMI_IO_PYTHON not found: set it to a Python with mummi_io's dependencies"
  "$MUMMI_IO_PYTHON" -c 'import filelock, redis' 2>/dev/null \
    || die "$MUMMI_IO_PYTHON lacks mummi_io's dependencies (filelock, redis): run pip install -e '${MUMMI_REPO_DIR}[redis]' with it, or set MUMMI_IO_PYTHON to the Python of the environment where mummi_io is installed"
}

# The deployment's password (generated by start_all_redis_nodes.sh).
read_password() {
  local file="$1/password"
  [ -s "$file" ] || die "no password file $file: start the deployment with start_all_redis_nodes.sh"
  head -n 1 "$file"
}

# redis-cli against one node, authenticated; extra arguments are the command.
# redis-cli exits 0 on a refused password: callers check the reply, never the status alone;
# and it waits forever for a server that accepts but never replies: hence `timeout`.
redis_cli() {
  local host="$1" port="$2" password="$3"
  shift 3
  REDISCLI_AUTH="$password" timeout 10 redis-cli --no-auth-warning -h "$host" -p "$port" "$@" 2>&1 | tr -d '\r'
}

# The node directory of HOST PORT in deployment DIR.
node_dir_of() {
  echo "$1/nodes/$2-$3"
}

# Whether HOST:PORT is a node of this deployment: it takes the password and
# serves the node's own directory (CONFIG GET dir). Prints why not otherwise;
# status 0: ours, 1: something else answers, 2: nothing answers, 3: a Redis too busy to say.
node_is_ours() {
  local host="$1" port="$2" password="$3" node_dir="$4" reply expected status=0
  reply="$(REDISCLI_AUTH="$password" timeout 10 redis-cli --no-auth-warning -h "$host" -p "$port" CONFIG GET dir 2>&1 | tr -d '\r')" || status=$?
  if [[ "$reply" == "Could not connect"* ]]; then
    echo "nothing answers there"
    return 2
  fi
  if [ "$status" -eq 124 ]; then
    echo "it does not answer as Redis does"  # a timeout: something listens there, but not Redis
    return 1
  fi
  case "$reply" in
    *WRONGPASS*|*NOAUTH*|*"invalid username-password"*|*"AUTH failed"*)
      echo "it does not take this deployment's password"
      return 1 ;;
    LOADING*|BUSY*)
      echo "it cannot say yet ($reply)"  # loading its data, or running a long script: ask again later
      return 3 ;;
  esac
  expected="$(cd "$node_dir" 2>/dev/null && pwd -P)" || expected="$node_dir"
  if [ "$(printf '%s\n' "$reply" | sed -n 2p)" != "$expected" ]; then
    echo "it serves another directory ($(printf '%s' "$reply" | tr '\n' ' '))"
    return 1
  fi
  return 0
}

# Whether anything still answers at HOST:PORT (any reply, even an error such as MISCONF, BUSY or
# LOADING: only a refused connection means the node is gone).
node_answers() {
  local reply status=0
  reply="$(redis_cli "$1" "$2" "$3" PING)" || status=$?
  [[ "$reply" != *"Could not connect"* ]] || return 1
  [ -n "$reply" ] || [ "$status" -eq 124 ]  # 124: no reply within the timeout, yet something holds the port
}

# The nodes of a registry, one "host port" per line; dies (instead of listing nothing) if it is unreadable.
registered_nodes() {
  local listing
  listing="$(mummi_servers list --registry "$1")" || die "cannot read the registry $1 (see the message above); fix or remove the bad line"
  printf '%s' "$listing"
}
