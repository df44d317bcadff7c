#!/usr/bin/env bash
# Every run behind the README's recipe tables: the Keras reference, --recipe original and
# --recipe tuned for 20,000 iterations, and the tuned recipe with each lever left out for 6,000,
# three seeds each, then the tables. About 3.5 hours on two CPU cores; runs already finished
# are skipped, so the script can be stopped and started again.
#
#   bash scripts/compare_recipes.sh [OUT]      # OUT defaults to results/recipes
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/recipes}
mkdir -p "$out"
seeds="1 2 3"

train() {  # name, then main1.py's flags
  local name=$1; shift
  [ -f "$out/$name/timing.json" ] || python main1.py --eval-every 2000 --out-dir "$out/$name" --overwrite "$@"
}

for seed in $seeds; do
  [ -f "$out/reference-s$seed/samples.npy" ] ||
    python reference.py --seed "$seed" --steps 20000 --eval-every 2000 --out-dir "$out/reference-s$seed"
  train "original-s$seed" --seed "$seed"
  train "tuned-s$seed" --seed "$seed" --recipe tuned
done
for lever in spectral_norm hinge ttur ema_warmup; do
  for seed in $seeds; do
    train "tuned-without-$lever-s$seed" --seed "$seed" --steps 6000 --recipe tuned --without "$lever"
  done
done

python evaluate.py --compare "$out"/reference-s* "$out"/original-s* "$out"/tuned-s? --at 6000 20000
python evaluate.py --compare "$out"/tuned-s? "$out"/tuned-without-* --at 6000
