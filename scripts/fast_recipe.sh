#!/usr/bin/env bash
# Every run behind the fast recipe's tables (docs/recipes.md): --recipe fast for 10,000 iterations
# on MNIST and Fashion-MNIST (its default length is a prefix of these runs: nothing in its training
# depends on where a run stops), the same with the Adam betas and two discriminator calls it had
# before (the lever that made it), its ablation on MNIST (seed 1, 4,000 iterations, one flag changed
# per run), the Keras reference for 20,000 on both datasets, and --recipe original and tuned for
# 6,000 on MNIST (precision and recall on the same evaluator); three seeds each, two runs at a time
# with one TensorFlow thread each; then the tables. Runs already finished are skipped, so the
# script can be stopped and started again.
#
#   bash scripts/fast_recipe.sh [OUT]      # OUT defaults to results/fast
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/fast}
mkdir -p "$out"
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1

jobs() {  # one line per run: its folder, then the command that makes it
  for dataset in mnist fashion_mnist; do
    name=${dataset%_mnist}
    for seed in 1 2 3; do
      echo "fast-$name-s$seed python main1.py --dataset $dataset --recipe fast --seed $seed --steps 10000 --eval-every 500 --offline --out-dir $out/fast-$name-s$seed"
    done
  done
  for dataset in mnist fashion_mnist; do  # fast as it was before its Adam betas and one D call
    name=${dataset%_mnist}
    for seed in 1 2 3; do
      echo "fast-adam05-$name-s$seed python main1.py --dataset $dataset --recipe fast --seed $seed --steps 10000 --eval-every 500 --offline --beta1 0.5 --beta2 0.999 --no-joint-discriminator-call --out-dir $out/fast-adam05-$name-s$seed"
    done
  done
  for flags in "--beta1 0.5 --beta2 0.999" "--beta2 0.999" "--no-joint-discriminator-call" "--no-bf16" \
               "--discriminator-width 1" "--discriminator-width 0.25" "--learning-rate 8e-4" "--learning-rate 3.2e-3" \
               "--without ema_warmup"; do
    # the ablation, seed 1, 4,000 iterations
    echo "fast-ablation-${flags//[ .-]/}-s1 python main1.py --recipe fast --seed 1 --steps 4000 --eval-every 1000 --offline $flags --out-dir $out/fast-ablation-${flags//[ .-]/}-s1"
  done
  # The screen that found the rate and betas (Fashion-MNIST, seed 1, 6,000 iterations; the batch-64
  # run 3,000 of 64 images, the same images as 6,000 of 32)
  for flags in "--learning-rate 8e-4" "--learning-rate 8e-4 --beta2 0.999" "--learning-rate 3.2e-3" \
               "--learning-rate 8e-4 --beta1 0.5 --beta2 0.999 --batch-size 64 --steps 3000"; do
    echo "fast-screen-${flags//[ .-]/}-s1 python main1.py --dataset fashion_mnist --recipe fast --seed 1 --steps 6000 --eval-every 1000 --offline $flags --out-dir $out/fast-screen-${flags//[ .-]/}-s1"
  done
  for dataset in fashion_mnist mnist; do
    name=${dataset%_mnist}
    for seed in 1 2 3; do
      echo "$name-reference-s$seed python reference.py --dataset $dataset --seed $seed --steps 20000 --eval-every 2000 --offline --out-dir $out/$name-reference-s$seed"
    done
  done
  for recipe in original tuned; do  # precision and recall of the other recipes on the same evaluator
    for seed in 1 2 3; do
      echo "$recipe-mnist-s$seed python main1.py --recipe $recipe --seed $seed --steps 6000 --eval-every 2000 --offline --out-dir $out/$recipe-mnist-s$seed"
    done
  done
}

# A run is done when it exited with 0 (OUT/NAME.done), checked as the run is about to start; an
# unfinished run (stopped, or failed) is started again from scratch. Each run logs to OUT/NAME.log.
jobs | while read -r name command; do
  case $command in *main1.py*) command="$command --overwrite" ;; esac
  echo "[ -f $out/$name.done ] || { $command > $out/$name.log 2>&1 && touch $out/$name.done; }"
done | xargs -P 2 -I{} sh -c "{}"

for dataset in mnist fashion; do
  python evaluate.py --compare "$out/$dataset"-reference-s? "$out/fast-$dataset"-s? "$out/fast-adam05-$dataset"-s? \
    --at 2000 3000 4000 5000 6000 8000 10000 20000
done
python evaluate.py --compare "$out"/fast-mnist-s1 "$out"/fast-ablation-*-s1/ --at 4000
python evaluate.py --compare "$out"/fast-fashion-s1 "$out"/fast-screen-*-s1/ --at 2000 4000 6000
python evaluate.py --compare "$out"/original-mnist-s? "$out"/tuned-mnist-s? "$out"/fast-mnist-s? "$out"/mnist-reference-s? --at 6000
