# shellcheck shell=bash
# Source this file to point mummi_io clients at a Redis deployment:
#   source setup/redis/load_redis_env.sh [DIR]
# DIR defaults to $MUMMI_REDIS_DIR, else ~/.mummi_io/redis.

MUMMI_REDIS_DIR="${1:-${MUMMI_REDIS_DIR:-$HOME/.mummi_io/redis}}"
export MUMMI_REDIS_DIR
export MUMMI_REDIS_REGISTRY="$MUMMI_REDIS_DIR/registry"
export MUMMI_REDIS_PASSWORD_FILE="$MUMMI_REDIS_DIR/password"
export MUMMI_IO_BACKEND="${MUMMI_IO_BACKEND:-redis}"
