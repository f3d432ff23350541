#!/usr/bin/env bash
# Run one incremental sync for cron or a systemd timer: `sixtyfour-sync run` from this
# repository's .venv, every output line appended to a log file with a timestamp and the pid.
#
# Usage: scripts/sixtyfour-sync-cron.sh [options of `sixtyfour-sync run`, e.g. --no-details]
#
# Environment:
#   SIXTYFOUR_SYNC_LOG  the log file (default var/log/sixtyfour-sync.log in the repository;
#                       a relative path is taken from the repository; "-" writes to stdout,
#                       e.g. for the systemd journal)
#   and every setting of the sync itself (SOURCES__SIXTYFOUR__API_KEY, ...), although
#   .dlt/secrets.toml in the repository is the usual place for them.
#
# The exit code is the sync's: 0 done, 3 done with a gap, 4 another sync was running (logged
# as a skip), anything else a failure (see "Exit codes" in the README). Without a sync: 2 when
# .venv is not set up, 1 when the log file cannot be opened. On a file log, exits other than 0
# and 4 also print one line on stderr, so cron mails (MAILTO) only when a person should look.

set -u

repo_dir=$(cd -- "$(dirname -- "$0")/.." && pwd -P) || exit 1
cd -- "$repo_dir" || exit 1
log_file=${SIXTYFOUR_SYNC_LOG:-var/log/sixtyfour-sync.log}
case $log_file in
    - | /*) ;;
    *) log_file=$repo_dir/$log_file ;;
esac
sync_bin=$repo_dir/.venv/bin/sixtyfour-sync

if [ "$log_file" = "-" ]; then
    exec 3>&1
else
    mkdir -p -- "$(dirname -- "$log_file")" || exit 1
    exec 3>>"$log_file" || exit 1
fi

# Prefix each line read on stdin with the time and this wrapper's pid, so the lines of two
# overlapping runs can be told apart.
stamp_lines() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s [%s] %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$$" "$line"
    done
}

log() {
    printf '%s\n' "$*" | stamp_lines >&3
}

alert() {
    log "$1"
    if [ "$log_file" != "-" ]; then
        printf 'sixtyfour-sync: %s (log: %s)\n' "$1" "$log_file" >&2
    fi
}

if [ ! -x "$sync_bin" ]; then
    alert "not installed: $sync_bin is missing; run 'make setup' in $repo_dir"
    exit 2
fi

log "start: sixtyfour-sync run${*:+ $*}"
"$sync_bin" run "$@" 2>&1 | stamp_lines >&3
status=${PIPESTATUS[0]}

case $status in
    0) log "done (exit 0)" ;;
    3) alert "done with a gap (exit 3): some changes could not be read; see sync_runs.gap_detail" ;;
    4) log "skipped (exit 4): another sync of this pipeline is still running" ;;
    *) alert "failed (exit $status); its error line is in the log" ;;
esac
exit "$status"
