# Sourced by scripts/install.sh and scripts/install_mmdet.sh: `step WHAT COMMAND...` runs one install step
# with its output in $LOG and prints one line, `install: WHAT ... N s`, or FAILED with the step's own last
# lines and a non-zero exit.
#
# The command runs in a subshell with `set -e` really on: a function called from an `if` (or before `||`)
# runs with errexit off in bash, so a failed install inside it used to be ignored and the step reported
# success (a tampered requirements.lock installed nothing and said OK). Every step is also followed by a
# check of what it was to install (install.sh: `check_installed`), not only by its exit status.
# Requires: LOG (the log file, its folder created).

duration() {  # 646 -> "646 s (10 min 46 s)"; under a minute just "N s"
  local s=$1
  if [ "$s" -ge 60 ]; then echo "$s s ($((s / 60)) min $((s % 60)) s)"; else echo "$s s"; fi
}

step() {
  local what=$1 start=$SECONDS from rc
  shift
  from=$(($(wc -l <"$LOG") + 1))
  printf 'install: %s ...' "$what"
  set +e
  (set -e; "$@") >>"$LOG" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    echo " $(duration $((SECONDS - start)))"
    return 0
  fi
  echo " FAILED after $(duration $((SECONDS - start))) (exit $rc; full log: $LOG)"
  tail -n "+$from" "$LOG" | tail -n 25 | sed 's/^/  | /'
  exit 1
}
