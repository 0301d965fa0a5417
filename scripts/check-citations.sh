#!/usr/bin/env bash
# Every citation in the repository resolves inside it: a "METHOD.md 6.3", "METHOD.md section 9",
# "METHOD.md O12" or "METHOD.md Appendix B" names a heading or an oddity that docs/METHOD.md has,
# and nothing points at a document or an issue tracker the repository does not contain (an
# outside spec, "the issue", "issue 7"). Run by CTest; prints "PASS: ..." when all resolve.
# Logs of past runs (bench/results/) and the fuzzers' seeds are records, not prose, and are skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
method=docs/METHOD.md
files=$(git ls-files 2>/dev/null || find . -type f -not -path './build*' -not -path './.git/*' | sed 's|^\./||')
files=$(grep -vE '^(bench/results/|fuzz/corpus/|tests/fixtures/)|\.(safetensors|jpg|png)$' <<<"$files" |
        grep -v '^scripts/check-citations.sh$')
bad=0

outside=$(grep -nHiE "ALGORITHM\.md|\.\./shared/|\bspec (section )?[O0-9]|\bthe issue\b|\bissue [0-9#]|\bissues [0-9]" $files 2>/dev/null)
if [ -n "$outside" ]; then
  echo "check-citations: these cite a document or an issue outside the repository (cite docs/METHOD.md or say it here):"
  echo "$outside"
  bad=1
fi

refs=$(grep -ohE "METHOD\.md,? (sections? )?(O[0-9]+|Appendix [A-Z]|[0-9]+(\.[0-9]+)?)" $files 2>/dev/null |
       sed -E 's/METHOD\.md,? (sections? )?//' | sort -u)
while IFS= read -r ref; do
  [ -z "$ref" ] && continue
  case $ref in
    O*) pattern="^\*\*$ref — " ;;
    Appendix*) pattern="^## $ref\." ;;
    *.*) pattern="^### ${ref//./\\.} " ;;
    *) pattern="^## $ref\. " ;;
  esac
  if ! grep -qE "$pattern" "$method"; then
    echo "check-citations: 'METHOD.md $ref' is cited but $method has no such part:"
    grep -nHE "METHOD\.md,? (sections? )?${ref//./\\.}([^0-9.]|\.?$)" $files | head -5
    bad=1
  fi
done <<<"$refs"

count=$(wc -l <<<"$refs")
if [ $bad -eq 0 ]; then echo "PASS: $count distinct METHOD.md citations resolve; none points outside the repository"; fi
exit $bad
