#!/usr/bin/env bash
# Start containerd (standalone, default socket) and dockerd for the e2e tests, unless they already
# answer. No systemd here: both run in their own session and outlive this script.
#   dockerd --containerd=/run/containerd/containerd.sock --iptables=false --ip6tables=false
#           --ip-masq=false --bridge=none   (no networking needed: tests only push/pull on loopback)
# Storage driver: dockerd's default (overlay2); falls back to vfs if that fails, or set
# DOCKER_STORAGE_DRIVER. Logs and pid files in $ENGINE_RUNDIR (default /var/run/moorage-ci).
set -euo pipefail
RUNDIR=${ENGINE_RUNDIR:-/var/run/moorage-ci}
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
mkdir -p "$RUNDIR"

if ctr version >/dev/null 2>&1; then
  echo "containerd: already answering"
else
  setsid nohup containerd >"$RUNDIR/containerd.log" 2>&1 </dev/null &
  echo $! >"$RUNDIR/containerd.pid"
  for _ in $(seq 150); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  if ! ctr version >/dev/null 2>&1; then
    tail -30 "$RUNDIR/containerd.log" >&2
    echo "containerd did not start" >&2
    exit 1
  fi
  echo "containerd: started, pid $(cat "$RUNDIR/containerd.pid")"
fi

start_dockerd() {  # start_dockerd [storage-driver]; 0 when `docker info` answers
  local args=(--containerd=/run/containerd/containerd.sock --iptables=false --ip6tables=false
              --ip-masq=false --bridge=none)
  [ -n "${1:-}" ] && args+=(--storage-driver="$1")
  setsid nohup dockerd "${args[@]}" >"$RUNDIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$RUNDIR/dockerd.pid"
  for _ in $(seq 120); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$RUNDIR/dockerd.pid")" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

if "$DOCKER" info >/dev/null 2>&1; then
  echo "dockerd: already answering"
else
  if ! start_dockerd "${DOCKER_STORAGE_DRIVER:-}"; then
    echo "dockerd failed with storage driver '${DOCKER_STORAGE_DRIVER:-default}':" >&2
    grep -E 'level=(error|fatal)' "$RUNDIR/dockerd.log" | tail -5 >&2 || true
    pid=$(cat "$RUNDIR/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; sleep 2; fi
    echo "retrying with --storage-driver=vfs" >&2
    if ! start_dockerd vfs; then
      tail -30 "$RUNDIR/dockerd.log" >&2
      echo "dockerd did not start" >&2
      exit 1
    fi
  fi
  echo "dockerd: started, pid $(cat "$RUNDIR/dockerd.pid")"
fi
"$DOCKER" info --format 'docker {{.ServerVersion}}, storage driver {{.Driver}}'
