# shellcheck shell=bash
# Source this file to point mummi_io clients at a Redis deployment:
#   source setup/redis/load_redis_env.sh [DIR]
# DIR defaults to $MUMMI_REDIS_DIR, else ~/.mummi_io/redis. Besides
# mummi_io's variables it exports the ones MuMMI's jobs read
# (MUMMI_REDIS_OUTPUTS, MUMMI_REDIS_SERVER, MUMMI_REDIS_CLIENT).

MUMMI_REDIS_DIR="${1:-${MUMMI_REDIS_DIR:-$HOME/.mummi_io/redis}}"
export MUMMI_REDIS_DIR
export MUMMI_REDIS_REGISTRY="$MUMMI_REDIS_DIR/registry"
export MUMMI_REDIS_PASSWORD_FILE="$MUMMI_REDIS_DIR/password"
# Left over from another deployment, these would win over the registry and the
# password file above (see the README's "Where clients find the nodes").
unset MUMMI_REDIS_PASSWORD MUMMI_REDIS_NODES
export MUMMI_IO_BACKEND="${MUMMI_IO_BACKEND:-redis}"
export MUMMI_REDIS_OUTPUTS="$MUMMI_REDIS_DIR"
MUMMI_REDIS_SERVER="$(command -v redis-server || true)"
MUMMI_REDIS_CLIENT="$(command -v redis-cli || true)"
export MUMMI_REDIS_SERVER MUMMI_REDIS_CLIENT
