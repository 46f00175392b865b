"""JAX side of `make bench`: the same models, optimizers and batch sizes as `lth bench`,
the whole training step (forward, backward, optax update) under one jax.jit, compiled
before timing. Run it under `taskset -c 0,1` to give XLA two cores. Prints one JSON object."""
import argparse
import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from jax import lax

p = argparse.ArgumentParser()
p.add_argument("--model", default="mnist_lenet_300_100")
p.add_argument("--batch-size", type=int)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
a = p.parse_args()

key = jax.random.PRNGKey(0)
params, state = {}, {}


def dense(name, fin, fout):
    global key
    key, k = jax.random.split(key)
    params[name + ".weight"] = jax.random.normal(k, (fout, fin)) * (2 / fin) ** 0.5
    params[name + ".bias"] = jnp.zeros((fout,))


def conv(name, cin, cout, k, bias=True):
    global key
    key, kk = jax.random.split(key)
    params[name + ".weight"] = jax.random.normal(kk, (cout, cin, k, k)) * (2 / (cin * k * k)) ** 0.5
    if bias:
        params[name + ".bias"] = jnp.zeros((cout,))


def bn(name, c):
    params[name + ".weight"] = jnp.ones((c,))
    params[name + ".bias"] = jnp.zeros((c,))
    state[name + ".running_mean"] = jnp.zeros((c,))
    state[name + ".running_var"] = jnp.ones((c,))


def linear(P, name, x):
    return x @ P[name + ".weight"].T + P[name + ".bias"]


def conv2d(P, name, x, stride=1, pad=1):
    y = lax.conv_general_dilated(x, P[name + ".weight"], (stride, stride), [(pad, pad), (pad, pad)],
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    if name + ".bias" in P:
        y = y + P[name + ".bias"][None, :, None, None]
    return y


def batchnorm(P, S, new_state, name, x):
    m = x.mean(axis=(0, 2, 3))
    v = x.var(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    new_state[name + ".running_mean"] = 0.9 * S[name + ".running_mean"] + 0.1 * m
    new_state[name + ".running_var"] = 0.9 * S[name + ".running_var"] + 0.1 * v * n / (n - 1)
    xh = (x - m[None, :, None, None]) / jnp.sqrt(v[None, :, None, None] + 1e-5)
    return xh * P[name + ".weight"][None, :, None, None] + P[name + ".bias"][None, :, None, None]


def maxpool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


if a.model == "mnist_lenet_300_100":
    dense("fc_layers.0", 784, 300); dense("fc_layers.1", 300, 100); dense("fc", 100, 10)
    shape = (28, 28, 1)

    def forward(P, S, x):
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(linear(P, "fc_layers.0", x))
        x = jax.nn.relu(linear(P, "fc_layers.1", x))
        return linear(P, "fc", x), S
elif a.model == "cifar_conv_2":
    conv("conv_layers.0", 3, 64, 3); conv("conv_layers.1", 64, 64, 3)
    dense("fc_layers.0", 16384, 256); dense("fc_layers.1", 256, 256); dense("fc", 256, 10)

    def forward(P, S, x):
        x = jax.nn.relu(conv2d(P, "conv_layers.0", x))
        x = maxpool(jax.nn.relu(conv2d(P, "conv_layers.1", x)))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(linear(P, "fc_layers.0", x))
        x = jax.nn.relu(linear(P, "fc_layers.1", x))
        return linear(P, "fc", x), S
elif a.model == "cifar_resnet_20":
    conv("conv", 3, 16, 3, bias=False); bn("bn", 16)
    plan, c, b = [], 16, 0
    for stage in range(3):
        out = 16 << stage
        for i in range(3):
            down = stage > 0 and i == 0
            n = f"blocks.{b}"
            conv(n + ".conv1", c, out, 3, False); bn(n + ".bn1", out)
            conv(n + ".conv2", out, out, 3, False); bn(n + ".bn2", out)
            if down:
                conv(n + ".shortcut.0", c, out, 1, False); bn(n + ".shortcut.1", out)
            plan.append((n, down))
            c, b = out, b + 1
    dense("fc", 64, 10)

    def forward(P, S, x):
        ns = {}
        x = jax.nn.relu(batchnorm(P, S, ns, "bn", conv2d(P, "conv", x)))
        for n, down in plan:
            s = 2 if down else 1
            h = jax.nn.relu(batchnorm(P, S, ns, n + ".bn1", conv2d(P, n + ".conv1", x, s)))
            h = batchnorm(P, S, ns, n + ".bn2", conv2d(P, n + ".conv2", h))
            sc = batchnorm(P, S, ns, n + ".shortcut.1", conv2d(P, n + ".shortcut.0", x, s, 0)) if down else x
            x = jax.nn.relu(h + sc)
        x = x.mean(axis=(2, 3))
        return linear(P, "fc", x), ns
else:
    raise SystemExit(f"no JAX twin for {a.model}")

sgd = "resnet" in a.model
batch = a.batch_size or (128 if sgd else 60)
if sgd:
    tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
else:
    tx = optax.adam(1.2e-3 if "lenet" in a.model else 2e-4)
opt_state = tx.init(params)
key, kx, ky = jax.random.split(key, 3)
x = jax.random.normal(kx, (batch, 1, 28, 28) if "mnist" in a.model else (batch, 3, 32, 32))
y = jax.random.randint(ky, (batch,), 0, 10)


def loss_fn(P, S, x, y):
    logits, ns = forward(P, S, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), ns


@jax.jit
def step(P, S, O, x, y):
    (loss, ns), g = jax.value_and_grad(loss_fn, has_aux=True)(P, S, x, y)
    updates, O = tx.update(g, O, P)
    return optax.apply_updates(P, updates), ns, O, loss


params, state, opt_state, loss = step(params, state, opt_state, x, y)  # compile
loss.block_until_ready()
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    params, state, opt_state, loss = step(params, state, opt_state, x, y)
    loss.block_until_ready()
    dt = (time.perf_counter() - t0) * 1000
    if i >= a.warmup:
        times.append(dt)
print(json.dumps({"impl": "jax", "model": a.model, "batch_size": batch, "step_ms": statistics.median(times), "steps_ms": times,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "jax": jax.__version__}))
