# Sourced by the scripts in scripts/infra/: `run` and `query` honour DRY (set by --dry-run).

# Runs a command, or prints it in dry-run mode.
run() {
  if [ -n "$DRY" ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
# Runs a query whose output later commands need; prints a placeholder in dry-run mode.
query() {
  local placeholder=$1; shift
  if [ -n "$DRY" ]; then
    { printf '+'; printf ' %q' "$@"; printf '\n'; } >&2
    echo "$placeholder"
  else
    "$@"
  fi
}
