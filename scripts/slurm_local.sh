#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests/slurm/ (the launch path walked for real:
# sbatch, srun, scancel --signal, scontrol requeue, job arrays and dependencies).
#
#   bash scripts/slurm_local.sh install   # only install the packages if missing (CI)
#   bash scripts/slurm_local.sh start     # install if missing, configure, start, wait for idle
#   bash scripts/slurm_local.sh status    # daemons and sinfo
#   bash scripts/slurm_local.sh stop      # kill exactly the daemons this script started
#   eval "$(bash scripts/slurm_local.sh env)"   # SLURM_CONF for sbatch / sinfo in this shell
#
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files) lives under
# SLURM_LOCAL_DIR (default /tmp/hybridir-slurm); nothing under /etc is written, so clients need
# SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf (the `env` command prints it; jobs inherit it from sbatch).
# Needs root (slurmd runs jobs as the submitting user) and Debian's packages, installed with apt
# when missing. Idempotent: `start` on a running cluster only waits for it; `stop` twice is fine.
# Why these plugins: proctrack/linuxproc and task/none need no cgroups (containers lack them);
# select/cons_tres is the plugin real GPU clusters use. JobRequeue=1 lets jobs requeue themselves.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/hybridir-slurm}
CTLD_PORT=${SLURM_LOCAL_PORT:-6817}
NODE=$(hostname -s)
CONF=$DIR/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "slurm_local: $*" >&2; }

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]} and not root: cannot install"; exit 3; }
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pid file -> running pid, or nothing.
alive() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(cat "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

write_config() {
    local cpus mem
    # nproc obeys OMP_NUM_THREADS (tests export 1): count the CPUs without it.
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # Slurm drains a node whose real memory is below the configured value: leave 10% headroom.
    mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
    mkdir -p "$DIR"/{munge,state,spool,log}
    chmod 700 "$DIR/munge"
    cat > "$CONF.tmp" <<EOF
# Written by scripts/slurm_local.sh: one node ($NODE, $cpus CPUs, $mem MiB), state under $DIR.
ClusterName=hybridir-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it may start again (default 120 s).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
JobRequeue=1
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# Generous timeouts: the daemons share two cores with the jobs (and other work) on this machine.
MessageTimeout=60
SlurmctldTimeout=120
SlurmdTimeout=300
KillWait=10
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && ! cmp -s "$CONF.tmp" "$CONF"; then
        # Running daemons keep the configuration they read: restart them on the new one.
        log "configuration changed: restarting the daemons"
        stop_slurm
    fi
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    export MUNGE_SOCKET=$DIR/munge/munge.socket
    [[ -f $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key" --force
    chmod 400 "$DIR/munge/munge.key"
    if ! alive "$DIR/munge/munged.pid" >/dev/null; then
        # --force: munged refuses /tmp-like parents it does not trust; the key stays 0400 root.
        munged --force --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munged.seed"
    fi
    munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null
}

start() {
    install_packages
    write_config
    start_munge
    export SLURM_CONF=$CONF
    alive "$DIR/slurmctld.pid" >/dev/null || slurmctld -f "$CONF"
    alive "$DIR/slurmd.pid" >/dev/null || slurmd -f "$CONF"
    local state=""
    for _ in $(seq 1 120); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        if [[ $state == idle || $state == mixed || $state == allocated ]]; then
            log "node $NODE $state (SLURM_CONF=$CONF)"
            return 0
        fi
        # A node left down or drained by an earlier run returns with an explicit resume.
        if [[ $state == down* || $state == drain* ]]; then
            scontrol update nodename="$NODE" state=resume 2>/dev/null || true
        fi
        sleep 0.5
    done
    log "node $NODE did not become idle (state '${state}'); logs in $DIR/log"
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

# Kill the daemons named by pid files (arguments), waiting up to 5 s each before SIGKILL.
stop_pidfiles() {
    local pid
    for pidfile in "$@"; do
        if pid=$(alive "$pidfile"); then
            kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            log "stopped $(basename "$pidfile" .pid) ($pid)"
        fi
        rm -f "$pidfile"
    done
}

stop_slurm() { stop_pidfiles "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; }

stop() { stop_pidfiles "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; }

status() {
    local pid
    for pidfile in "$DIR/munge/munged.pid" "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
        if pid=$(alive "$pidfile"); then echo "$(basename "$pidfile" .pid): running ($pid)"
        else echo "$(basename "$pidfile" .pid): stopped"; fi
    done
    [[ -f $CONF ]] && SLURM_CONF=$CONF sinfo 2>/dev/null || true
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
