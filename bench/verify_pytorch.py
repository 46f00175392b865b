"""`make verify`: PyTorch loads LotteryKit's safetensors files and computes the same logits.

For each model, `lth train` runs a few steps on synthetic data; the final model file is
loaded with safetensors.torch.load_file into the PyTorch twin (bench/lth_models.py) with
strict=True, and the logits on the test images written by `lth logits` are compared.
Also checks that a lottery mask loads and that the pruned weights are exactly zero.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lth_models  # noqa: E402

LTH = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".build", "release", "lth")
out = tempfile.mkdtemp(prefix="lth-verify-")
atexit.register(shutil.rmtree, out, True)  # about 100 MB of run folders
failures = 0
for model, steps in [("mnist_lenet_300_100", "20it"), ("cifar_conv_2", "3it"), ("cifar_resnet_20", "3it")]:
    r = subprocess.run([LTH, "train", "--model", model, "--dataset", "synthetic", "--training-steps", steps,
                        "--subsample-fraction", "0.05", "--output", out, "--quiet", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {model}: lth train: {r.stderr.strip()}")
        failures += 1
        continue
    run_dir = json.loads(r.stdout.strip().splitlines()[-1])["run_dir"]
    x_path = os.path.join(out, f"{model}-inputs.safetensors")
    r = subprocess.run([LTH, "logits", run_dir + "/model_final.safetensors", "--model", model, "--count", "16",
                        "--output", x_path], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {model}: lth logits: {r.stderr.strip()}")
        failures += 1
        continue
    twin = lth_models.make(model)
    twin.load_state_dict(load_file(run_dir + "/model_final.safetensors"), strict=True)
    twin.eval()
    data = load_file(x_path)
    with torch.no_grad():
        ours = data["logits"].numpy()
        theirs = twin(data["inputs"]).numpy()
    err = float(np.max(np.abs(ours - theirs)) / (np.max(np.abs(theirs)) + 1e-12))
    ok = err < 1e-4 and np.array_equal(ours.argmax(1), theirs.argmax(1))
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {model}: PyTorch logits match LotteryKit's (max relative difference {err:.2e})")

r = subprocess.run([LTH, "lottery", "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.05",
                    "--training-steps", "1ep", "--levels", "2", "--output", out, "--quiet", "--json"],
                   capture_output=True, text=True)
root = json.loads(r.stdout.strip().splitlines()[-1])["run_dir"] if r.returncode == 0 else None
if root:
    level = root + "/replicate_1/level_2/main"
    mask = load_file(level + "/mask.safetensors")
    state = load_file(level + "/model_final.safetensors")
    zeros = all(bool((state[k][mask[k] == 0] == 0).all()) for k in mask)
    density = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    print(f"{'ok  ' if zeros else 'FAIL'} lottery mask loads in PyTorch (density {density:.3f}); pruned weights are zero: {zeros}")
    failures += not zeros
    # The sparse export of that level (CSR per layer) in PyTorch: torch.sparse_csr products.
    ticket, logits = out + "/ticket.safetensors", out + "/ticket_logits.safetensors"
    ok = (subprocess.run([LTH, "export", level, "--output", ticket], capture_output=True).returncode == 0
          and subprocess.run([LTH, "logits", ticket, "--output", logits], capture_output=True).returncode == 0)
    c = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "sparse_export_check.py"), ticket, logits],
                       capture_output=True, text=True) if ok else None
    ok = ok and c.returncode == 0
    print(f"{'ok  ' if ok else 'FAIL'} sparse export loads in PyTorch as torch.sparse_csr: "
          + (c.stdout.strip().splitlines()[0] if c and c.stdout else "failed"))
    failures += not ok
else:
    print(f"FAIL lottery: {r.stderr.strip()}")
    failures += 1
sys.exit(1 if failures else 0)
