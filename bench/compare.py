"""`make bench`: LotteryKit against PyTorch (default and channels_last) and JAX, same models,
optimizers, batch sizes and 2 threads, alternated in one invocation. Prints every step time,
the ratio fastest-peer / LotteryKit, and LotteryKit's fraction of the 2-core sgemm roofline
(measured here, in this invocation)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("--lth", default=os.path.join(HERE, "..", ".build", "release", "lth"))
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--models", default="mnist_lenet_300_100,cifar_conv_2,cifar_resnet_20")
p.add_argument("--isa", default=None,
               help="cap every side's CPU kernels at this ISA (AVX2): oneDNN's DNNL_MAX_CPU_ISA / "
                    "ONEDNN_MAX_CPU_ISA (LotteryKit and PyTorch), ATEN_CPU_CAPABILITY (PyTorch), "
                    "XLA's --xla_cpu_max_isa (JAX)")
a = p.parse_args()

# Steps per run: about a second of work or more on the small model (its step is ~1 ms and
# noisy), fewer on the big ones. Small models also alternate more rounds.
STEPS = {"mnist_lenet_300_100": 500, "cifar_conv_2": 10, "cifar_resnet_20": 6}
ROUNDS = {"mnist_lenet_300_100": 3 * a.rounds}
if a.isa:
    os.environ["DNNL_MAX_CPU_ISA"] = a.isa.upper()
    os.environ["ONEDNN_MAX_CPU_ISA"] = a.isa.upper()
    os.environ["ATEN_CPU_CAPABILITY"] = a.isa.lower()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_max_isa={a.isa.upper()}").strip()
cores = ",".join(str(i) for i in range(a.threads))


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def have(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def forward_macs(model):
    sys.path.insert(0, HERE)
    import torch
    import lth_models
    m = lth_models.make(model)
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            macs += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
        elif isinstance(mod, torch.nn.Linear):
            macs += out.numel() * mod.in_features
    for mod in m.modules():
        mod.register_forward_hook(hook)
    x = torch.zeros((1, 1, 28, 28) if model.startswith("mnist") else (1, 3, 32, 32))
    m(x)
    return macs


def sgemm_gflops():
    import torch
    torch.set_num_threads(a.threads)
    n = 2048
    x = torch.randn(n, n)
    y = torch.randn(n, n)
    x @ y
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        x @ y
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


info = json.loads(subprocess.run([a.lth, "bench", "--model", "mnist_lenet_10", "--steps", "1", "--json"],
                                 capture_output=True, text=True).stdout)
print(f"CPU: {info.get('cpu')}; oneDNN ISA (LotteryKit): {info.get('onednn_isa')}"
      + (f" (capped with --isa {a.isa})" if a.isa else ""))
print(f"LotteryKit Float GEMM: {info.get('float_gemm', 'BLAS')}; BLAS: {info.get('blas_config')}; core {info.get('blas_core')}; "
      f"BLAS threads per call {info.get('blas_threads')}; env {info.get('blas_environment')}; threads {a.threads}")
torch_ok, jax_ok = have("torch"), have("jax") and have("optax")
if not torch_ok:
    print("PyTorch not installed: pip install 'torch==2.13.0+cpu' (or apt-get install python3-torch)")
if not jax_ok:
    print("JAX not installed: pip install 'jax[cpu]' optax")
roof = sgemm_gflops() if torch_ok else 170.0
print(f"2-core sgemm roofline (2048^3, measured now): {roof:.1f} GFLOP/s")
taskset = ["taskset", "-c", cores] if shutil.which("taskset") else []
env_note = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
if env_note:
    print(f"environment: {env_note}")

for model in a.models.split(","):
    steps = str(STEPS.get(model, 10))
    impls = {"lotterykit": [a.lth, "bench", "--model", model, "--threads", str(a.threads), "--steps", steps, "--json"]}
    if torch_ok:
        impls["pytorch"] = [sys.executable, os.path.join(HERE, "pytorch_reference.py"), "--model", model,
                            "--threads", str(a.threads), "--steps", steps]
        if not model.startswith("mnist"):
            impls["pytorch_channels_last"] = impls["pytorch"] + ["--channels-last"]
    if jax_ok:
        impls["jax"] = taskset + [sys.executable, os.path.join(HERE, "jax_reference.py"), "--model", model,
                                  "--steps", steps]
    results = {k: [] for k in impls}
    every = {k: [] for k in impls}
    rss = {}
    backends = set()
    for r in range(ROUNDS.get(model, a.rounds)):
        for name, cmd in impls.items():
            res, err = run(cmd)
            if res is None:
                print(f"  {model} {name}: failed: {err[0]}")
                continue
            results[name].append(res["step_ms"])
            every[name].append(res.get("steps_ms", []))
            rss[name] = res.get("peak_rss_mb")
            if name == "lotterykit":
                backends.update(res.get("conv_backends", {}).values())
    flops = 3 * 2 * forward_macs(model) * (128 if "resnet" in model else 60) if torch_ok else None
    print(f"\n{model}: step times in ms per round (median of {steps} steps each)")
    for name, ts in results.items():
        med = statistics.median(ts) if ts else float("nan")
        print(f"  {name:24s} {' '.join(f'{t:9.2f}' for t in ts)}   median {med:9.2f}   peak RSS {rss.get(name, 0):7.1f} MiB")
    print("  step times per round, ms: p10 / median / p90 of the round's steps")
    for name, rounds in every.items():
        cells = []
        for ts in rounds:
            q = sorted(ts)
            if q:
                cells.append(f"{q[len(q) // 10]:.2f}/{q[len(q) // 2]:.2f}/{q[min(len(q) - 1, len(q) * 9 // 10)]:.2f}")
        print(f"    {name:24s} " + "  ".join(cells))
    lk = statistics.median(results["lotterykit"]) if results["lotterykit"] else None
    peers = {k: statistics.median(v) for k, v in results.items() if k != "lotterykit" and v}
    if lk and peers:
        best = min(peers, key=peers.get)
        print(f"  ratio fastest peer ({best}) / LotteryKit: {peers[best] / lk:.2f}x")
    if lk and flops:
        print(f"  LotteryKit at {flops / (lk / 1000) / 1e9:.1f} GFLOP/s = {flops / (lk / 1000) / 1e9 / roof * 100:.0f}% "
              f"of the sgemm roofline ({flops / 1e6:.0f} MFLOP per step; roofline time {flops / roof / 1e6:.2f} ms)")
        if any("wino" in b for b in backends):
            print("  (FLOPs counted as direct convolution; LotteryKit's Winograd F(4x4,3x3) layers do about a "
                  "quarter of the multiplications, so more than 100% is possible)")
        if backends:
            print(f"  LotteryKit's convolution kernels: {', '.join(sorted(backends))}")
