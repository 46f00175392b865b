"""Loads a LotteryKit sparse export (`lth export LEVEL --format sparse`) into PyTorch and
checks that its logits match LotteryKit's (`lth logits EXPORT`).

Every pruned weight becomes a torch.sparse_csr_tensor. Linear layers of LeNet run as sparse
matrix products (torch.sparse.mm); every model also loads, densified, into its PyTorch twin
(bench/lth_models.py) as a second check.

usage: python3 bench/sparse_export_check.py TICKET LOGITS [--tolerance 1e-4]
"""
import argparse
import json
import sys
import warnings

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, __import__("os").path.dirname(__file__))
import lth_models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("ticket")
p.add_argument("logits")
p.add_argument("--tolerance", type=float, default=1e-4)
a = p.parse_args()
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

with safe_open(a.ticket, "pt") as f:
    meta = f.metadata()
tensors = load_file(a.ticket)
shapes = json.loads(meta["shapes"])

# The pruned weights as sparse CSR matrices [rows, cols] (OIHW flattened to [O, I*KH*KW]).
sparse = {}
for name, shape in shapes.items():
    rows = shape[0]
    cols = tensors[name + ".mask"].numel() // rows
    sparse[name] = torch.sparse_csr_tensor(
        tensors[name + ".crow_indices"], tensors[name + ".col_indices"], tensors[name + ".values"],
        size=(rows, cols), check_invariants=True)

ref = load_file(a.logits)
x, expected = ref["inputs"], ref["logits"]

# 1. The densified export in the PyTorch twin.
twin = lth_models.make(meta["model"], channels=x.shape[1], size=x.shape[2])
state = {k: v for k, v in tensors.items() if not k.startswith(("init.", "rewind.")) and "." in k
         and not k.endswith((".crow_indices", ".col_indices", ".values", ".mask"))}
for name, w in sparse.items():
    state[name] = w.to_dense().reshape(shapes[name])
missing, unexpected = twin.load_state_dict(state, strict=False)
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
twin.eval()
with torch.no_grad():
    dense_logits = twin(x)
err = (dense_logits - expected).abs().max().item()
print(f"{meta['model']} at density {float(meta['density']):.4f}: densified twin, max |logit difference| {err:.2e}")
ok = err <= a.tolerance

# 2. LeNet: the forward pass with sparse matrix products.
if meta["model"].startswith("mnist_lenet_"):
    h = torch.flatten(x, 1)
    names = sorted((k for k in shapes if k.startswith("fc_layers.")), key=lambda k: int(k.split(".")[1]))
    with torch.no_grad():
        for name in names + ["fc.weight"]:
            b = tensors[name.replace(".weight", ".bias")]
            if name in sparse:
                h = torch.sparse.mm(sparse[name], h.T).T + b
            else:
                h = h @ tensors[name].T + b
            if name != "fc.weight":
                h = torch.relu(h)
    err2 = (h - expected).abs().max().item()
    print(f"  sparse CSR products: max |logit difference| {err2:.2e}")
    ok = ok and err2 <= a.tolerance
print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
