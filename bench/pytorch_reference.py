"""PyTorch side of `make bench`: times full training steps of the same models, optimizers
and batch sizes as `lth bench`, on synthetic in-memory data. Prints one JSON object."""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import lth_models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", default="mnist_lenet_300_100")
p.add_argument("--batch-size", type=int)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--channels-last", action="store_true")
p.add_argument("--density", type=float, default=1.0,
               help="keep this fraction of every linear and convolution weight by a random mask "
                    "(torch.nn.utils.prune.custom_from_mask: masked weights, dense arithmetic)")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
sgd = "resnet" in a.model or "vgg" in a.model
batch = a.batch_size or (128 if sgd else 60)
model = lth_models.make(a.model)
shape = (batch, 1, 28, 28) if a.model.startswith("mnist_") else (batch, 3, 32, 32)
x = torch.randn(*shape)
y = torch.randint(0, 10, (batch,))
if a.density < 1:
    from torch.nn.utils import prune
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            prune.custom_from_mask(mod, "weight", (torch.rand(mod.weight.shape, generator=g) < a.density).float())
if a.channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
if sgd:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
else:
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3 if "lenet" in a.model else 2e-4)
loss_fn = nn.CrossEntropyLoss()
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    dt = (time.perf_counter() - t0) * 1000
    if i >= a.warmup:
        times.append(dt)
print(json.dumps({
    "impl": "pytorch" + ("_channels_last" if a.channels_last else ""), "model": a.model, "batch_size": batch,
    "threads": a.threads, "density": a.density, "step_ms": statistics.median(times), "steps_ms": times,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__,
}))
