#!/bin/sh
# The PaI paper's table on Fashion-MNIST (docs/guide-prune-init.md): every method
# at 4 densities with its three ablations, magnitude pruning after training, and IMP with its
# ablations, 2 replicates; then one side-by-side table. Usage:
#   bench/pai_table.sh [MODEL] [TRAINING_STEPS] [OUTPUT]   (default mnist_lenet_300_100 2ep ./lth_runs/pai_table)
# Environment: REPLICATES (2), EXTRA (more flags for every command, e.g. "--dataset
# fashion_mnist --subsample-fraction 0.25"), LEVELS (IMP levels, 20), BRANCH_LEVELS (5,10,15,20).
set -e
LTH=${LTH:-.build/release/lth}
MODEL=${1:-mnist_lenet_300_100}
STEPS=${2:-2ep}
OUT=${3:-./lth_runs/pai_table}
DENS=0.1,0.032,0.01,0.0032
F="--model $MODEL --training-steps $STEPS --replicates ${REPLICATES:-2} --output $OUT --quiet ${EXTRA:-}"
start=$(date +%s)
for m in random magnitude snip grasp synflow magnitude-after-training; do
  $LTH prune-init $F --method $m --densities $DENS --allow-collapse > /dev/null
  for b in shuffle reinit invert; do
    $LTH branch $b $F --method $m --densities $DENS --allow-collapse > /dev/null
  done
done
LEVELS=${LEVELS:-20}
$LTH lottery $F --levels $LEVELS > /dev/null
for b in shuffle reinit invert; do
  $LTH branch $b $F --levels ${BRANCH_LEVELS:-5,10,15,20} > /dev/null
done
echo "wall-clock: $(( $(date +%s) - start )) s"
$LTH results $(ls -d $OUT/pai_* $OUT/lottery_*)
