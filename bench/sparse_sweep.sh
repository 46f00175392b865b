#!/bin/bash
# The measurements behind SparseKernelRule: every pruned layer of LeNet-300-100, Conv-2 and
# ResNet-20, dense against sparse kernels (--sparse-kernels on), at densities 0.5 to 0.02.
# usage: bench/sparse_sweep.sh [path/to/lth]   (about 10 minutes on 2 cores)
LTH=${1:-.build/release/lth}
for m in mnist_lenet_300_100 cifar_conv_2 cifar_resnet_20; do
  for d in 0.5 0.3 0.2 0.1 0.05 0.02; do
    steps=50; [ $m != mnist_lenet_300_100 ] && steps=3
    echo "== $m $d"
    "$LTH" bench --model $m --density $d --sparse-kernels on --sparse-layers --steps $steps 2>&1 \
      | grep -E 'density|median step'
  done
done
