#!/usr/bin/env bash
# Start a one-node Slurm batch system on this host whose qsub/qstat/qdel accept PBS scripts
# (Debian slurm-wlm + slurm-wlm-torque + munge). Used by the `pbs` tests and by CI.
#
# Idempotent: installs what is missing, (re)writes the config, starts only what is not
# running, and waits (bounded) until the node is idle. Run as root:
#     sudo bash cluster/testbed/start.sh          # stop with cluster/testbed/stop.sh
# Environment: BUMPNET_SLURM_DIR (state/log directory, default /tmp/bumpnet-slurm),
#              BUMPNET_SLURM_WAIT_S (seconds to wait for the node, default 60).
set -euo pipefail

STATE_DIR="${BUMPNET_SLURM_DIR:-/tmp/bumpnet-slurm}"
WAIT_S="${BUMPNET_SLURM_WAIT_S:-60}"
CONF=/etc/slurm/slurm.conf
MARKER="# bumpnet-masses testbed"
KEY=/etc/munge/munge.key
NODE="$(hostname -s)"

log() { echo "[testbed] $*" >&2; }
die() { echo "[testbed] ERROR: $*" >&2; exit 1; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local cmd missing=0
    for cmd in qsub qstat qdel sinfo slurmctld slurmd munged; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" = 0 ] && return 0
    log "installing slurm-wlm slurm-wlm-torque munge (apt-get)"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then  # keep the packages from starting services themselves
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm slurm-wlm-torque munge >/dev/null
    [ "$made_policy" = 1 ] && rm -f "$policy"
    command -v qsub >/dev/null || die "qsub still missing after installing slurm-wlm-torque"
}

ensure_munge_key() {
    if [ ! -s "$KEY" ]; then
        log "creating munge key $KEY"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$KEY"
        else
            dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$KEY" && chmod 0400 "$KEY"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    log "starting munged"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force
    local i
    for i in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "munged does not answer: see /var/log/munge/munged.log"
}

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    # leave ~5 % for the system, or slurmd reports less memory than configured and drains
    mem_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)"
    mkdir -p "$STATE_DIR"/state "$STATE_DIR"/spool "$STATE_DIR"/log
    cat >"$STATE_DIR/slurm.conf.new" <<CONF
$MARKER: written by cluster/testbed/start.sh; safe to delete
ClusterName=bumpnet
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
KillWait=5
MinJobAge=60
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if [ -e "$CONF" ] && ! grep -q "^$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    mkdir -p "$(dirname "$CONF")"
    if cmp -s "$STATE_DIR/slurm.conf.new" "$CONF"; then
        rm -f "$STATE_DIR/slurm.conf.new"
        return 1  # unchanged
    fi
    mv "$STATE_DIR/slurm.conf.new" "$CONF"
    log "wrote $CONF (node $NODE, $cpus CPUs, ${mem_mb} MB)"
    return 0
}

stop_daemons() {
    local pidfile
    for pidfile in "$STATE_DIR/slurmd.pid" "$STATE_DIR/slurmctld.pid"; do
        if running "$pidfile"; then
            kill "$(cat "$pidfile")"
            local i
            for i in $(seq 50); do running "$pidfile" || break; sleep 0.2; done
        fi
    done
}

start_daemons() {
    if ! running "$STATE_DIR/slurmctld.pid"; then
        log "starting slurmctld"
        slurmctld -i || die "slurmctld failed: see $STATE_DIR/log/slurmctld.log"
    fi
    if ! running "$STATE_DIR/slurmd.pid"; then
        log "starting slurmd"
        slurmd || die "slurmd failed: see $STATE_DIR/log/slurmd.log"
    fi
}

wait_for_node() {
    local deadline=$((SECONDS + WAIT_S)) state=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        state="$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle | mixed | allocated | completing) return 0 ;;
            drained* | draining | down* | drain*)
                scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node $NODE not ready after ${WAIT_S}s (state '${state:-no answer}'): see $STATE_DIR/log/"
}

main() {
    [ "$(id -u)" = 0 ] || die "run as root: it installs packages and starts daemons"
    install_packages
    ensure_munge_key
    start_munge
    if write_conf; then
        stop_daemons  # config changed: restart with the new one
    fi
    start_daemons
    wait_for_node
    log "ready: node $NODE in partition 'batch' ($(sinfo -h -N -n "$NODE" -o '%T'))"
    cat >&2 <<USAGE
[testbed] use:  qsub -q batch -l select=1:ncpus=1:mem=1GB -l walltime=00:10:00 job.sh
[testbed]       qstat; qdel JOBID; sinfo; squeue
[testbed]       pytest -m pbs        # the batch-system tests
[testbed] logs: $STATE_DIR/log/   stop: bash $(dirname "$0")/stop.sh
USAGE
}

main "$@"
