#!/usr/bin/env bash
# distributed_cli.sh MOCO MPIEXEC WORK_DIR - the commands under `mpirun -np 2` on the CPU give what one
# process gives:
#   pretrain  2 ranks with -b 8 --bn-groups 1 against 1 process with -b 8 --bn-groups 2, masked (hp)
#             with a hard negative: the loss logged at every step agrees within 1e-5 relative (the
#             first to 2 ulps: the mean of 8 rows against the mean of two means of 4; then the order
#             of the gradient sums differs too, docs/METHOD.md 8.1: 4e-6 relative after 3 steps of a
#             loss near 10), and the checkpoints' step and metadata agree
#   knn       the same top-1 / top-5 line
#   lincls    the same best and last accuracies (--cached-features: seconds)
set -euo pipefail
MOCO=$1
MPIEXEC=$2
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
export OMP_NUM_THREADS=1
"$MOCO" synth "$WORK/data" --classes 2 --train-per-class 8 --val-per-class 3 --size 24 --force >/dev/null
mpi=("$MPIEXEC" --allow-run-as-root --oversubscribe -np 2)
fail() { echo "FAIL: $*"; exit 1; }

common=(pretrain "$WORK/data" -a resnet18 --small-stem --width 8 -b 8 --moco-k 32 --moco-dim 8 --mlp --aug-plus
        --image-size 32 --epochs 2 -j 1 --device cpu --seed 7 -p 1 --strategy hp --num-nonsem 1)
"$MOCO" "${common[@]}" --save-dir "$WORK/one" --bn-groups 2 >"$WORK/one.log" 2>&1 || { cat "$WORK/one.log"; fail "pretrain, 1 process"; }
"${mpi[@]}" "$MOCO" "${common[@]}" --save-dir "$WORK/two" >"$WORK/two.log" 2>&1 || { cat "$WORK/two.log"; fail "pretrain, 2 ranks"; }
losses() { sed -n 's/.*"kind":"step",.*"loss":\([^,]*\),.*/\1/p' "$1/metrics.jsonl"; }
paste <(losses "$WORK/one") <(losses "$WORK/two") >"$WORK/losses.txt"
[ "$(wc -l <"$WORK/losses.txt")" -eq 4 ] || fail "pretrain: expected 4 logged steps, found $(wc -l <"$WORK/losses.txt")"
awk '{ d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1
       if (d > 1e-5 * m || NF != 2) { print "FAIL: step " NR ": loss " $1 " (1 process) against " $2 " (2 ranks)"; bad = 1 } }
     END { exit bad }' "$WORK/losses.txt"
for run in one two; do "$MOCO" info "$WORK/$run/checkpoints/last.safetensors" | grep -E "^  (step|bn_groups_total|batch_size):" >"$WORK/$run.meta"; done
diff "$WORK/one.meta" "$WORK/two.meta" || fail "pretrain: the checkpoints' metadata differ"
grep -q "world_size: 2" <("$MOCO" info "$WORK/two/checkpoints/last.safetensors") || fail "pretrain: world_size not recorded"
echo "pretrain: 4 steps, losses equal within 1e-5 relative ($(tr '\t' '/' <"$WORK/losses.txt" | tr '\n' ' '))"

ckpt="$WORK/two/checkpoints/last.safetensors"
"$MOCO" knn "$WORK/data" --pretrained "$ckpt" -b 2 -j 1 --device cpu 2>&1 | grep "knn top-1" >"$WORK/knn1.txt"
"${mpi[@]}" "$MOCO" knn "$WORK/data" --pretrained "$ckpt" -b 2 -j 1 --device cpu 2>&1 | grep "knn top-1" >"$WORK/knn2.txt"
diff "$WORK/knn1.txt" "$WORK/knn2.txt" || fail "knn: 2 ranks print another result"
echo "knn: $(cat "$WORK/knn2.txt")"

lincls=(lincls "$WORK/data" --pretrained "$ckpt" -b 4 --epochs 3 --lr 1 -j 1 --device cpu --cached-features)
"$MOCO" "${lincls[@]}" --save-dir "$WORK/lincls1" 2>&1 | grep -E "^(best|last) " >"$WORK/lincls1.txt"
"${mpi[@]}" "$MOCO" "${lincls[@]}" --save-dir "$WORK/lincls2" 2>&1 | grep -E "^(best|last) " >"$WORK/lincls2.txt"
[ -s "$WORK/lincls1.txt" ] || fail "lincls: no result table"
diff "$WORK/lincls1.txt" "$WORK/lincls2.txt" || fail "lincls: 2 ranks print another result"
echo "lincls: $(tr '\n' ' ' <"$WORK/lincls2.txt")"
echo "PASS: pretrain, knn and lincls on 2 ranks equal one process"
