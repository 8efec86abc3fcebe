#!/usr/bin/env bash
# Stop the one-node Slurm testbed started by start.sh: cancel its jobs, stop slurmd and
# slurmctld. munged is left running (other software may use it); pass --munge to stop it too.
set -euo pipefail

STATE_DIR="${BUMPNET_SLURM_DIR:-/tmp/bumpnet-slurm}"

log() { echo "[testbed] $*" >&2; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {
    local pidfile="$1" i
    running "$pidfile" || return 0
    log "stopping $(basename "$pidfile" .pid)"
    kill "$(cat "$pidfile")"
    for i in $(seq 50); do running "$pidfile" || return 0; sleep 0.2; done
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
}

if running "$STATE_DIR/slurmctld.pid"; then
    scancel --partition=batch 2>/dev/null || true
    sleep 1
fi
stop_pidfile "$STATE_DIR/slurmd.pid"
stop_pidfile "$STATE_DIR/slurmctld.pid"
if [ "${1:-}" = "--munge" ] && [ -s /run/munge/munged.pid ]; then
    stop_pidfile /run/munge/munged.pid
fi
log "stopped"
