#!/usr/bin/env bash
# Every run behind the README's recipe tables: the Keras reference, --recipe original,
# --recipe tuned and the tuned conditional model for 20,000 iterations, and the tuned recipe with
# each lever left out for 6,000, three seeds each; both conditionings with both recipes for
# 6,000, one seed; then the tables. Runs go two at a time with one TensorFlow thread each (on two
# cores that gets about 1.2x the work done of one run with two threads). Runs already finished
# are skipped, so the script can be stopped and started again.
#
#   bash scripts/compare_recipes.sh [OUT]      # OUT defaults to results/recipes
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/recipes}
mkdir -p "$out"
export TF_NUM_INTRAOP_THREADS=1 OMP_NUM_THREADS=1

jobs() {  # one line per run: its folder, then the command that makes it
  for seed in 1 2 3; do
    echo "reference-s$seed python reference.py --seed $seed --steps 20000 --eval-every 2000 --offline --out-dir $out/reference-s$seed"
    echo "tuned-s$seed python main1.py --seed $seed --recipe tuned --eval-every 2000 --offline --out-dir $out/tuned-s$seed"
    echo "original-s$seed python main1.py --seed $seed --eval-every 2000 --offline --out-dir $out/original-s$seed"
  done
  for seed in 1 2 3; do  # the class-conditional model (README, "Ask for a digit")
    echo "tuned-conditional-s$seed python main1.py --seed $seed --recipe tuned --conditional --eval-every 2000 --offline --out-dir $out/tuned-conditional-s$seed"
  done
  for recipe in tuned original; do  # both ways of conditioning with both recipes, one seed
    for way in projection concat; do
      echo "$recipe-conditional-$way-s1 python main1.py --seed 1 --recipe $recipe --conditional --conditioning $way --steps 6000 --eval-every 2000 --offline --out-dir $out/$recipe-conditional-$way-s1"
    done
  done
  for lever in spectral_norm hinge ttur ema_warmup; do
    for seed in 1 2 3; do
      echo "tuned-without-$lever-s$seed python main1.py --seed $seed --recipe tuned --without $lever --steps 6000 --eval-every 2000 --offline --out-dir $out/tuned-without-$lever-s$seed"
    done
  done
}

# A run is done when its last output is there (reference.py: samples.npy, main1.py: timing.json);
# an unfinished main1.py run is started again from scratch. Each run logs to OUT/NAME.log.
jobs | while read -r name command; do
  [ -f "$out/$name/samples.npy" ] || [ -f "$out/$name/timing.json" ] && continue
  case $command in *main1.py*) command="$command --overwrite" ;; esac
  echo "$command > $out/$name.log 2>&1"
done | xargs -P 2 -I{} sh -c "{}"

python evaluate.py --compare "$out"/reference-s* "$out"/original-s* "$out"/tuned-s? --at 6000 20000
python evaluate.py --compare "$out"/tuned-s? "$out"/tuned-without-* --at 6000
python evaluate.py --compare "$out"/tuned-s1 "$out"/original-s1 "$out"/*-conditional-*-s1 --at 6000
python evaluate.py --compare "$out"/tuned-s? "$out"/tuned-conditional-s? --at 6000 20000
