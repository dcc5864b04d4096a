#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for the SLURM test and for trying the launcher:
#
#   tests/slurm_cluster.sh install     apt-get install slurm-wlm and munge (root, Debian/Ubuntu)
#   tests/slurm_cluster.sh start DIR   start munged (unless running), slurmctld and slurmd,
#                                      with slurm.conf, state and logs in DIR
#   tests/slurm_cluster.sh stop DIR    stop what `start DIR` started
#
# Point sbatch/squeue (and Hydra's submitit launcher) at it with SLURM_CONF=DIR/slurm.conf.
# The daemons run as root with no cgroups; every address in the config is 127.0.0.1.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "installing SLURM needs root (apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null || die "no apt-get here: install slurm-wlm and munge yourself"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already running: use it
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    munged --force 2>/dev/null
    touch "$dir/munged.ours"
    for _ in $(seq 20); do
        munge -n | unmunge >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "munged did not start"
}

start() {
    [ "$(id -u)" = 0 ] || die "the one-node cluster runs its daemons as root"
    command -v slurmctld >/dev/null || die "SLURM is not installed (run: $0 install)"
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        die "SLURM daemons already run on this machine: not starting a second cluster"
    fi
    mkdir -p "$dir/state" "$dir/spool"
    dir=$(cd "$dir" && pwd)
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS (make test sets it)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    start_munge
    slurmctld -f "$SLURM_CONF" || die "slurmctld did not start (see $dir/slurmctld.log)"
    slurmd -f "$SLURM_CONF" || die "slurmd did not start (see $dir/slurmd.log)"
    for _ in $(seq 60); do
        if [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; then
            echo "SLURM cluster up: node $host idle, partition debug. Use: export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    die "the node did not come up idle within 30 s (see $dir/slurmctld.log, $dir/slurmd.log)"
}

stop() {
    export SLURM_CONF=$dir/slurm.conf
    [ -f "$SLURM_CONF" ] || die "no cluster config in $dir"
    # Jobs first: a job step whose slurmd has gone lingers as an orphaned slurmstepd.
    squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 60); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.5
    done
    scontrol shutdown >/dev/null 2>&1 || true
    for pidfile in "$dir/slurmctld.pid" "$dir/slurmd.pid"; do
        for _ in $(seq 20); do
            [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || break
            sleep 0.5
        done
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill "$(cat "$pidfile")"
        fi
    done
    if [ -f "$dir/munged.ours" ]; then
        pkill -x munged || true
        rm -f "$dir/munged.ours"
    fi
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
    install) install ;;
    start | stop)
        [ -n "$dir" ] || die "usage: $0 $cmd DIR"
        mkdir -p "$dir"
        "$cmd"
        ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
