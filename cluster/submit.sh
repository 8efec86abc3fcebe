#!/usr/bin/env bash
# Batch-array fallback for sites that forbid a long-lived Dask scheduler: plain PBS jobs that
# each run runner.py on their own, no scheduler, no open ports. Same interface as the seed
# pipeline's submit.sh:
#
#     bash cluster/submit.sh                 one job running the whole pipeline
#     NUM_JOBS=4 bash cluster/submit.sh      4 shard jobs + 1 merge job after them
#
# Run `bash cluster/submit.sh --help` for every setting.
# shellcheck disable=SC2016  # job-script lines are written with single quotes on purpose
set -euo pipefail

PROG="submit.sh"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<'USAGE'
usage: [VAR=value ...] bash cluster/submit.sh [--dry-run] [--help]

Submits runner.py as ordinary PBS batch jobs (no Dask scheduler outside the jobs).

  NUM_JOBS unset     ONE job runs the whole pipeline (runner.py --local --workers $NCPUS:
                     a Dask cluster inside the job; EXECUTOR=iterative for a single process).
  NUM_JOBS=N         a run directory is created, then
                       - N shard jobs (a job array, or N jobs with USE_ARRAY=0), job i running
                         runner.py --executor iterative --batch-job-index i --total-batch-jobs N
                         --run-dir RUN_DIR  -> RUN_DIR/shards/job_000i/
                       - one merge job, held until every shard succeeded (-W depend=afterok),
                         running runner.py --merge-only --run-dir RUN_DIR  -> RUN_DIR/
                     A shard whose inputs partly failed (runner exit 3) counts as done: the merge
                     runs and marks the result "partial". A shard that fails deletes the merge job.

Prints the job IDs and the run directory; job scripts, the frozen config and the job IDs are
kept in RUN_DIR/jobs/, the batch logs go to RUN_DIR/logs/.

Options:
  --dry-run   print the job scripts and qsub commands; create and submit nothing
  -h, --help  this text

Environment (defaults from the config's cluster.pbs section where it has the setting):
  NUM_JOBS       number of shard jobs (unset: one job for the whole run)
  CONFIG         config file (default: as runner.py: ./config.yaml if present, else built-in
                 defaults). It is resolved and validated once here and frozen into
                 RUN_DIR/jobs/config.yaml, which every job uses.
  EXTRA_ARGS     further runner.py options, shell-quoted, e.g. "--demo", "--max-files 3",
                 "--input '/data/*.root'" (not: --run-dir, --config, --executor, --pbs,
                 --batch-job-index, --total-batch-jobs, --merge-only, --resume, --plots-only,
                 --dry-run: this script sets those)
  RUN_DIR        the run directory (default {base_output_dir}/{run_name}_{YYYYMMDD_HHMMSS}
                 from the config); must be on a filesystem the jobs see and not hold a run yet
  QUEUE          queue (cluster.pbs.queue; default: the site's default queue)
  ACCOUNT        account/project, -A (cluster.pbs.account)
  WALLTIME       HH:MM:SS per job (cluster.pbs.walltime, 04:00:00)
  NCPUS          cores per job (cluster.pbs.cores, 1)
  MEM            memory per job (cluster.pbs.memory, 4GB)
  RESOURCE_SPEC  the -l resource request (cluster.pbs.resource_spec, else
                 "select=1:ncpus=$NCPUS:mem=$MEM" (PBS Pro syntax, also read by Slurm's
                 wrapper), or "nodes=1:ppn=$NCPUS,mem=$MEM" when PBS_FLAVOR is torque)
  PYTHON         the Python the jobs run (cluster.pbs.python, else $VIRTUAL_ENV/bin/python,
                 else the project's .venv/bin/python, else `command -v python3`)
  SETUP          a shell line run first in every job (and here before the config check),
                 e.g. "source /path/to/venv/bin/activate" or "module load python";
                 cluster.pbs.job_script_prologue lines are added after it
  EXECUTOR       shards: iterative (default) or futures; single job: dask (default, a local
                 Dask cluster with NCPUS workers), iterative or futures
  JOB_NAME       job name prefix (default bumpnet; PBS Pro allows 15 characters in all)
  USE_ARRAY      1 (default): shards as one job array; 0: N separate jobs
  PBS_FLAVOR     pbspro | torque | slurm (Slurm's qsub wrapper) | auto (default: detected)
                 -- decides the array option (-J / -t), the array index variable and the
                 dependency type (afterok / afterokarray)
  QSUB, QDEL     submit/delete commands (default qsub, qdel)

Exit codes: 0 submitted, 1 submission failed (already submitted jobs are deleted again),
2 usage or config error.
USAGE
}

die() { # die CODE MESSAGE: one line on stderr, delete what was submitted, exit
    local code="$1"
    shift
    echo "$PROG: error: $*" >&2
    cleanup_submitted
    exit "$code"
}
note() { echo "$PROG: $*" >&2; }

SUBMITTED=()
cleanup_submitted() {
    [ "${#SUBMITTED[@]}" -gt 0 ] || return 0
    if "${QDEL:-qdel}" "${SUBMITTED[@]}" >/dev/null 2>&1; then
        note "deleted the jobs submitted so far: ${SUBMITTED[*]}"
    else
        note "could not delete the jobs submitted so far; delete them by hand: ${QDEL:-qdel} ${SUBMITTED[*]}"
    fi
    SUBMITTED=()
}
trap 'echo >&2; die 1 "interrupted"' INT TERM

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1 ;;
        *) die 2 "unknown argument '$arg'; settings are environment variables (see --help)" ;;
    esac
done

# -- settings ---------------------------------------------------------------------------------

NUM_JOBS="${NUM_JOBS:-}"
USE_ARRAY="${USE_ARRAY:-1}"
JOB_NAME="${JOB_NAME:-bumpnet}"
PBS_FLAVOR="${PBS_FLAVOR:-auto}"
QSUB="${QSUB:-qsub}"
QDEL="${QDEL:-qdel}"
SETUP="${SETUP:-}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

if [ -n "$NUM_JOBS" ] && ! [[ "$NUM_JOBS" =~ ^[1-9][0-9]*$ ]]; then
    die 2 "NUM_JOBS='$NUM_JOBS' is not a positive integer"
fi
[[ "$USE_ARRAY" =~ ^[01]$ ]] || die 2 "USE_ARRAY='$USE_ARRAY' must be 0 or 1"
[[ "$JOB_NAME" =~ ^[A-Za-z][A-Za-z0-9_.-]*$ ]] ||
    die 2 "JOB_NAME='$JOB_NAME' must start with a letter and hold only letters, digits, _ . -"
if [ -n "$NUM_JOBS" ]; then
    EXECUTOR="${EXECUTOR:-iterative}"
    case "$EXECUTOR" in
        iterative | futures) ;;
        *) die 2 "EXECUTOR='$EXECUTOR': shard jobs run iterative or futures (no scheduler)" ;;
    esac
else
    EXECUTOR="${EXECUTOR:-dask}"
    case "$EXECUTOR" in
        dask | iterative | futures) ;;
        *) die 2 "EXECUTOR='$EXECUTOR' must be dask, iterative or futures" ;;
    esac
fi

# The interpreter that checks the config here (the jobs use $PYTHON, see below).
if [ -n "${PYTHON:-}" ]; then
    LOCAL_PYTHON="$PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    LOCAL_PYTHON="$VIRTUAL_ENV/bin/python"
elif [ -x "$REPO/.venv/bin/python" ]; then
    LOCAL_PYTHON="$REPO/.venv/bin/python"
else
    LOCAL_PYTHON="python3"
fi

if [ -f "$REPO/runner.py" ]; then
    RUNNER=("$REPO/runner.py")
else # installed copy of this script (package data): run the CLI module
    RUNNER=(-c 'import sys; from processor.run.cli import main; sys.exit(main())')
fi

# -- resolve and validate the config, name the run directory (processor.run.submit_plan) -------


FROZEN_TMP="$(mktemp)"
trap 'rm -f "$FROZEN_TMP"' EXIT
GIVEN_RUN_DIR="${RUN_DIR:-}" # empty: the run directory is named by the runner's rule
resolved="$(
    set +eu
    eval "$SETUP" >&2 || {
        echo "$PROG: error: SETUP failed here (exit $?): '$SETUP' -- it also runs before the config check on this host" >&2
        exit 2
    }
    command -v "$LOCAL_PYTHON" >/dev/null 2>&1 ||
        { echo "$PROG: error: no Python '$LOCAL_PYTHON' (set PYTHON or SETUP)" >&2; exit 2; }
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$LOCAL_PYTHON" -c 'import processor.run.submit_plan' 2>/dev/null || {
        echo "$PROG: error: $LOCAL_PYTHON cannot import the project; install it there (pip install -e .) or set PYTHON / SETUP" >&2
        exit 2
    }
    SUBMIT_DRY_RUN="$DRY_RUN" NUM_JOBS="$NUM_JOBS" EXTRA_ARGS="$EXTRA_ARGS" \
        RUN_DIR="${RUN_DIR:-}" CONFIG="${CONFIG:-}" FROZEN_TMP="$FROZEN_TMP" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
        "$LOCAL_PYTHON" -m processor.run.submit_plan
)" || exit 2
eval "$resolved"

QUEUE="${QUEUE:-$CFG_QUEUE}"
ACCOUNT="${ACCOUNT:-$CFG_ACCOUNT}"
WALLTIME="${WALLTIME:-$CFG_WALLTIME}"
NCPUS="${NCPUS:-$CFG_NCPUS}"
MEM="${MEM:-$CFG_MEM}"
[[ "$WALLTIME" =~ ^[0-9]+:[0-5][0-9]:[0-5][0-9]$ ]] || die 2 "WALLTIME='$WALLTIME' is not HH:MM:SS"
[[ "$NCPUS" =~ ^[1-9][0-9]*$ ]] || die 2 "NCPUS='$NCPUS' is not a positive integer"
[[ "$MEM" =~ ^[0-9]+([.][0-9]+)?[KkMmGgTt]?[Bb]?$ ]] || die 2 "MEM='$MEM' is not a size like 4GB"
# The jobs' Python: explicit, else the config's, else the one that just checked the config.
if [ -n "${PYTHON:-}" ]; then
    JOB_PYTHON="$PYTHON"
elif [ -n "$CFG_PYTHON" ]; then
    JOB_PYTHON="$CFG_PYTHON"
else
    JOB_PYTHON="$SELF_PYTHON"
fi
WORKDIR="$PWD" # jobs run where submit.sh was called, so relative paths mean the same there

# -- batch-system flavour ---------------------------------------------------------------------

detect_flavor() {
    local path
    path="$(command -v "$QSUB" 2>/dev/null)" || { echo none; return; }
    if [ -f "$path" ] && grep -q -I -i slurm "$path" 2>/dev/null; then
        echo slurm # Slurm's Torque/PBS compatibility wrapper (a Perl script)
    elif "$QSUB" --version 2>&1 | grep -q -i "pbs_version"; then
        echo pbspro
    elif "$QSUB" --version 2>&1 | grep -q -i "version"; then
        echo torque
    else
        echo pbspro
    fi
}
if [ "$PBS_FLAVOR" = auto ]; then
    PBS_FLAVOR="$(detect_flavor)"
    if [ "$PBS_FLAVOR" = none ]; then
        if [ "$DRY_RUN" = 1 ]; then
            PBS_FLAVOR=pbspro
        else
            die 2 "'$QSUB' not found on PATH: run this on a PBS/Torque submit host (or set QSUB)"
        fi
    fi
fi
case "$PBS_FLAVOR" in
    pbspro) ARRAY_OPT=-J; ARRAY_DEP=afterok ;;
    torque) ARRAY_OPT=-t; ARRAY_DEP=afterokarray ;;
    slurm) ARRAY_OPT=-J; ARRAY_DEP=afterok ;;
    *) die 2 "PBS_FLAVOR='$PBS_FLAVOR' must be pbspro, torque, slurm or auto" ;;
esac

if [ "$PBS_FLAVOR" = torque ]; then
    DEFAULT_SPEC="nodes=1:ppn=$NCPUS,mem=$MEM"
else
    DEFAULT_SPEC="select=1:ncpus=$NCPUS:mem=$MEM"
fi
RESOURCE_SPEC="${RESOURCE_SPEC:-${CFG_RESOURCE_SPEC:-$DEFAULT_SPEC}}"
for var in QUEUE ACCOUNT RESOURCE_SPEC; do # they become "#PBS" lines: one word each
    [[ "${!var}" =~ ^[^[:space:]]*$ ]] || die 2 "$var='${!var}' must not contain spaces or newlines"
done

# -- job scripts ------------------------------------------------------------------------------

q() { printf '%q' "$1"; }
JOBS_DIR="$RUN_DIR/jobs"
LOG_DIR="$RUN_DIR/logs"
FROZEN_CONFIG="$JOBS_DIR/config.yaml"
RUNNER_Q="$(q "$JOB_PYTHON")"
for part in "${RUNNER[@]}"; do RUNNER_Q+=" $(q "$part")"; done
IDS_FILE="$JOBS_DIR/job_ids"

header() { # header NAME: directives and environment set-up common to every job
    echo "#!/bin/bash"
    echo "#PBS -N $1"
    [ -z "$QUEUE" ] || echo "#PBS -q $QUEUE"
    [ -z "$ACCOUNT" ] || echo "#PBS -A $ACCOUNT"
    echo "#PBS -l $RESOURCE_SPEC"
    echo "#PBS -l walltime=$WALLTIME"
    echo "# written by cluster/submit.sh on $(date '+%Y-%m-%d %H:%M:%S'); run directory $RUN_DIR"
    echo "cd $(q "$WORKDIR") || exit 1"
    [ -z "$SETUP" ] || printf '%s\n' "$SETUP"
    [ -z "$CFG_PROLOGUE" ] || printf '%s\n' "$CFG_PROLOGUE"
    echo "set -u"
    echo "echo \"\$(date '+%F %T') job \${PBS_JOBID:-\${SLURM_JOB_ID:-?}} on \$(hostname)\" >&2"
}

shard_script() { # shard_script [INDEX]: without INDEX it reads the array index
    header "$JOB_NAME-shard"
    if [ -n "${1:-}" ]; then
        echo "index=$1"
    else
        echo 'index="${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}}"'
        echo '[ -n "$index" ] || { echo "submit.sh shard: no array index (PBS_ARRAY_INDEX, PBS_ARRAYID, SLURM_ARRAY_TASK_ID)" >&2; exit 1; }'
    fi
    cat <<EOF
rc=0
$RUNNER_Q --config $(q "$FROZEN_CONFIG") --executor $EXECUTOR \\
    --batch-job-index "\$index" --total-batch-jobs $NUM_JOBS --run-dir $(q "$RUN_DIR") $EXTRA_Q || rc=\$?
if [ "\$rc" = 3 ]; then
    echo "shard \$index: some inputs failed (listed in its manifest.json); the merge will mark the result partial" >&2
    exit 0
fi
if [ "\$rc" != 0 ]; then
    echo "shard \$index of $NUM_JOBS failed (exit \$rc); see above and $(q "$RUN_DIR")/shards/job_\$(printf %04d "\$index")/logs/run.log" >&2
    merge="\$(sed -n 's/^merge=//p' $(q "$IDS_FILE") 2>/dev/null || true)"
    if [ -n "\$merge" ] && command -v $(q "$QDEL") >/dev/null 2>&1; then
        $(q "$QDEL") "\$merge" >/dev/null 2>&1 && echo "deleted the merge job \$merge (it would wait forever)" >&2
    fi
    echo "to finish: rerun this shard (bash $(q "$JOBS_DIR")/rerun_shard.sh \$index), then $RUNNER_Q --merge-only --run-dir $(q "$RUN_DIR") --config $(q "$FROZEN_CONFIG")" >&2
fi
exit "\$rc"
EOF
}

rerun_script() { # run one shard by hand (interactively or as `qsub` of a copy)
    echo "#!/bin/bash"
    echo "# bash rerun_shard.sh INDEX: run shard INDEX of $NUM_JOBS again, here (chunks it already"
    echo "# finished are reloaded from its checkpoints/)"
    echo "set -euo pipefail"
    echo 'index="${1:?usage: rerun_shard.sh INDEX}"'
    echo "cd $(q "$WORKDIR")"
    [ -z "$SETUP" ] || printf '%s\n' "$SETUP"
    echo "exec $RUNNER_Q --config $(q "$FROZEN_CONFIG") --executor $EXECUTOR --batch-job-index \"\$index\" --total-batch-jobs $NUM_JOBS --run-dir $(q "$RUN_DIR") $EXTRA_Q"
}

merge_script() {
    header "$JOB_NAME-merge"
    cat <<EOF
missing=""
for i in \$(seq 1 $NUM_JOBS); do
    shard="\$(printf %04d "\$i")"
    [ -f $(q "$RUN_DIR")/shards/job_"\$shard"/manifest.json ] || missing="\$missing \$i"
done
if [ -n "\$missing" ]; then
    echo "merge: shard(s)\$missing of $NUM_JOBS have no manifest.json in $(q "$RUN_DIR")/shards/; not merging an incomplete run" >&2
    exit 1
fi
exec $RUNNER_Q --config $(q "$FROZEN_CONFIG") --merge-only --run-dir $(q "$RUN_DIR") --log-level $LOG_LEVEL
EOF
}

SINGLE_HOW="--executor $EXECUTOR"
[ "$EXECUTOR" != dask ] || SINGLE_HOW="--local --workers $NCPUS"
single_script() {
    header "$JOB_NAME"
    echo "exec $RUNNER_Q --config $(q "$FROZEN_CONFIG") $SINGLE_HOW --run-dir $(q "$RUN_DIR") $EXTRA_Q"
}

# -- submission -------------------------------------------------------------------------------

one_line() { tr '\n' ' ' | sed -e 's/[[:space:]]\+/ /g' -e 's/^ //' -e 's/ $//' | cut -c1-400; }

SUBMIT_ID=""
submit() { # submit WHAT SCRIPT [qsub options...]: sets SUBMIT_ID
    local what="$1" script="$2"
    shift 2
    if [ "$DRY_RUN" = 1 ]; then
        echo "--- $JOBS_DIR/${script##*/}"
        cat "$script"
        echo "--- (cd $LOG_DIR && $QSUB $* $JOBS_DIR/${script##*/})"
        SUBMIT_ID="<$what>"
        return
    fi
    local out err rc=0
    err="$(mktemp)"
    out="$(cd "$LOG_DIR" && "$QSUB" "$@" "$script" 2>"$err")" || rc=$?
    if [ "$rc" != 0 ]; then
        local msg
        msg="$(one_line <"$err")"
        rm -f "$err"
        die 1 "'$QSUB $*' failed (exit $rc) submitting the $what: ${msg:-no message} -- check QUEUE, ACCOUNT, WALLTIME and RESOURCE_SPEC (see --help)"
    fi
    rm -f "$err"
    SUBMIT_ID="$(printf '%s\n' "$out" | sed -e 's/[[:space:]]//g' -e '/^$/d' | tail -n1)"
    [[ "$SUBMIT_ID" =~ ^[0-9] ]] ||
        die 1 "'$QSUB' printed no job ID for the $what (output: '$(printf '%s' "$out" | one_line)')"
    SUBMITTED+=("$SUBMIT_ID")
    echo "$what=$SUBMIT_ID" >>"$IDS_FILE"
}

if [ "$DRY_RUN" = 1 ]; then
    SCRIPTS="$(mktemp -d)" # the job scripts, shown and thrown away
    trap 'rm -rf "$SCRIPTS" "$FROZEN_TMP"' EXIT
    echo "(dry run: nothing is created or submitted)"
else
    # Claim the run directory: jobs/ is created without -p, so of two submissions that chose the
    # same directory (started in the same second, or the same RUN_DIR) exactly one gets it; the
    # other takes the next free name (_1, _2, ...) or, with RUN_DIR given, stops.
    base_dir="$RUN_DIR"
    n=0
    while :; do
        mkdir -p "$RUN_DIR" || die 2 "cannot create the run directory $RUN_DIR"
        mkdir "$RUN_DIR/jobs" 2>/dev/null && break
        [ -d "$RUN_DIR/jobs" ] || die 2 "cannot create the run directory $RUN_DIR/jobs"
        [ -z "$GIVEN_RUN_DIR" ] ||
            die 2 "RUN_DIR=$RUN_DIR was just taken by another submission (jobs/ exists); choose a new directory"
        n=$((n + 1))
        RUN_DIR="${base_dir}_$n"
    done
    JOBS_DIR="$RUN_DIR/jobs"
    LOG_DIR="$RUN_DIR/logs"
    FROZEN_CONFIG="$JOBS_DIR/config.yaml"
    IDS_FILE="$JOBS_DIR/job_ids"
    SCRIPTS="$JOBS_DIR"
    for sub in histograms plots logs; do
        mkdir -p "$RUN_DIR/$sub" || die 2 "cannot create the run directory $RUN_DIR"
    done
    mv "$FROZEN_TMP" "$FROZEN_CONFIG"
fi

if [ -z "$NUM_JOBS" ]; then
    single_script >"$SCRIPTS/run.sh"
    submit job "$SCRIPTS/run.sh" -N "$JOB_NAME"
    echo "run directory: $RUN_DIR"
    echo "job:           $SUBMIT_ID ($JOB_NAME: runner.py $SINGLE_HOW)"
    echo "logs:          $LOG_DIR/"
    exit 0
fi

rerun_script >"$SCRIPTS/rerun_shard.sh"
SHARD_IDS=()
if [ "$USE_ARRAY" = 1 ] && [ "$NUM_JOBS" -gt 1 ]; then
    shard_script >"$SCRIPTS/shard.sh"
    submit shards "$SCRIPTS/shard.sh" -N "$JOB_NAME-shard" "$ARRAY_OPT" "1-$NUM_JOBS"
    SHARD_IDS=("$SUBMIT_ID")
    DEPEND="$ARRAY_DEP:$SUBMIT_ID"
    SHARD_TEXT="$SUBMIT_ID (array $ARRAY_OPT 1-$NUM_JOBS)"
else
    DEPEND="afterok"
    for i in $(seq 1 "$NUM_JOBS"); do
        script="$SCRIPTS/shard_$(printf %04d "$i").sh"
        shard_script "$i" >"$script"
        submit "shard$i" "$script" -N "$JOB_NAME-shard"
        SHARD_IDS+=("$SUBMIT_ID")
        DEPEND+=":$SUBMIT_ID"
    done
    SHARD_TEXT="${SHARD_IDS[*]}"
fi
merge_script >"$SCRIPTS/merge.sh"
submit merge "$SCRIPTS/merge.sh" -N "$JOB_NAME-merge" -W "depend=$DEPEND"
MERGE_ID="$SUBMIT_ID"
SUBMITTED=() # all in: nothing to undo from here on

echo "run directory: $RUN_DIR"
echo "shard jobs:    $SHARD_TEXT ($NUM_JOBS shard(s), $PBS_FLAVOR)"
echo "merge job:     $MERGE_ID (runs when every shard succeeded)"
echo "logs:          $LOG_DIR/"
echo "result:        $RUN_DIR/histograms/ and manifest.json once the merge job finished"
