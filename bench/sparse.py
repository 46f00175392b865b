"""`make bench`, sparse rows: LotteryKit on sparse kernels against LotteryKit on dense kernels
with the same masks (`lth bench --compare-dense`: both in one process, steps alternating)
and PyTorch with the same density of masks (torch.nn.utils.prune: dense arithmetic), rounds
alternating, same threads. Then the per-layer table of `lth bench --sparse-layers`
(training step and inference at batch 1 and 500, dense against sparse).

Masks are random, every prunable layer at the row's density (IMP keeps the output layer
denser; `lth lottery` runs show that case)."""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("--lth", default=os.path.join(HERE, "..", ".build", "release", "lth"))
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--rows", default="mnist_lenet_300_100:0.21,mnist_lenet_300_100:0.036,mnist_lenet_300_100:0.012,"
                                  "cifar_conv_2:0.1,cifar_conv_2:0.036,cifar_resnet_20:0.1")
p.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
a = p.parse_args()
STEPS = {"mnist_lenet_300_100": 400, "cifar_conv_2": 8, "cifar_resnet_20": 4}


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


torch_ok = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
info = run([a.lth, "bench", "--model", "mnist_lenet_10", "--steps", "1", "--json"]) or {}
print(f"\nSparse kernels. CPU: {info.get('cpu')}; oneDNN ISA {info.get('onednn_isa')}; threads {a.threads}")
print(f"{'model':22s} {'density':>8s} {'sparse ms':>10s} {'dense ms':>9s} {'pytorch ms':>11s} "
      f"{'vs dense':>9s} {'vs pytorch':>11s}  kernels")
for row in a.rows.split(","):
    model, density = row.split(":")
    steps = str(STEPS.get(model, 5))
    lk, dense, pt, kernels = [], [], [], {}
    for _ in range(a.rounds):
        r = run([a.lth, "bench", "--model", model, "--density", density, "--compare-dense", "--threads",
                 str(a.threads), "--steps", steps, "--json"])
        if r:
            lk.append(r["step_ms"])
            dense.append(r["dense_step_ms"])
            kernels = r.get("sparse_kernels", {})
        if torch_ok:
            t = run([sys.executable, os.path.join(HERE, "pytorch_reference.py"), "--model", model, "--density",
                     density, "--threads", str(a.threads), "--steps", steps])
            if t:
                pt.append(t["step_ms"])
    m = statistics.median(lk) if lk else float("nan")
    d = statistics.median(dense) if dense else float("nan")
    t = statistics.median(pt) if pt else float("nan")
    sparse_layers = sum(1 for v in kernels.values() if v.startswith("sparse"))
    print(f"{model:22s} {float(density):8.3f} {m:10.3f} {d:9.3f} {t:11.3f} {d / m:8.2f}x {t / m:10.2f}x  "
          f"{sparse_layers}/{len(kernels)} layers sparse")
if not a.no_layers:
    for row in a.rows.split(","):
        model, density = row.split(":")
        print(f"\n{model} at density {density}: " + "per-layer medians, ms, dense / sparse (speed-up); * = auto's choice")
        out = subprocess.run([a.lth, "bench", "--model", model, "--density", density, "--sparse-layers",
                              "--sparse-kernels", "on", "--threads", str(a.threads), "--steps", "3"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "density 0" in line and ("train" in line):
                print(line)
