# Sourced by the scripts that print a summary table (quickstart.sh, longer-eval.sh).
# json_number FILE KEY: the first number stored under "KEY" in FILE (the flat result files that
# `moco knn --json` and `moco lincls` write); stops the script with a message when there is none.
json_number() {
  local value
  value=$(sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -1)
  [ -n "$value" ] || { echo "$(basename "$0"): no number '$2' in $1" >&2; exit 1; }
  echo "$value"
}
