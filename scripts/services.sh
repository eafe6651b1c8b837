#!/usr/bin/env bash
# Makes sure the services the tests talk to are up: PostgreSQL (127.0.0.1:5432) and Redis
# (127.0.0.1:6379). Starts them with the machine's own packages if they are down; never
# reconfigures anything; installs Debian's redis-server when the binary is missing.
set -uo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if ! pg_up; then
  echo "services: starting PostgreSQL"
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "services: PostgreSQL is not reachable at 127.0.0.1:5432" >&2; exit 1; }

# The cluster suite starts Redis servers of its own: the binary must be there.
if ! command -v redis-server >/dev/null; then
  echo "services: installing Debian's redis-server (the cluster suite runs its own)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null || { echo "services: redis-server is not installed and could not be installed" >&2; exit 1; }

if ! redis_up; then
  echo "services: starting Redis"
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  fi
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi
redis_up || echo "services: warning: Redis is not reachable at 127.0.0.1:6379" >&2
exit 0
