#!/bin/sh
# The instability report on Fashion-MNIST (docs/guide-lmc.md, "Instability on Fashion-MNIST"): LeNet-300-100
# at k = 0; a narrow ResNet-20 against k; an IMP subnetwork near 5% density against a random
# mask of the same per-tensor counts. Usage: bench/lmc_report.sh [OUTPUT] (default ./lth_runs/lmc_report)
# Environment: THREADS (2), RESNET (cifar_resnet_20_8), RESNET_STEPS (2500it).
set -e
LTH=${LTH:-.build/release/lth}
OUT=${1:-./lth_runs/lmc_report}
T="--threads ${THREADS:-2} --output $OUT --quiet"
t() { s=$(date +%s); "$@" > /dev/null; echo "$(( $(date +%s) - s )) s: $*" | cut -c1-160; }
LENET="--model mnist_lenet_300_100 --training-steps 2ep --replicates 2"
t $LTH lmc $LENET --spawn-steps 0 $T
t $LTH lottery $LENET --levels 13 $T
LOT=$(ls -d $OUT/lottery_* | head -1)
t $LTH lmc $LENET --spawn-steps 0,100,500 --mask-from $LOT --level 13 $T
t $LTH lmc $LENET --spawn-steps 0,100,500 --mask-from $LOT --level 13 --random-mask $T
RESNET="--model ${RESNET:-cifar_resnet_20_8} --dataset fashion_mnist --training-steps ${RESNET_STEPS:-2500it} --replicates 2 --points 15 --train-eval-size 2000"
t $LTH lmc $RESNET --spawn-steps 0,100,500,2000 $T
for d in $OUT/lmc_*; do echo "== $d"; $LTH results $d; done
