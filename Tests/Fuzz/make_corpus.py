#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (`make fuzz`) into corpus/<target>/: small
valid files of each format, made here (no downloaded data). Re-running rewrites them."""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


# IDX: 2-byte label-part length, label file, image file (see FuzzIDX.swift).
def idx_pair(labels, images, zip_labels=False, zip_images=False):
    lab = gz(labels) if zip_labels else labels
    return struct.pack(">H", len(lab)) + lab + (gz(images) if zip_images else images)


for n, (h, w) in [(1, (2, 2)), (3, (2, 3)), (2, (28, 28))]:
    labels = idx([n], [i % 10 for i in range(n)])
    images = idx([n, h, w], [(i * 7) % 256 for i in range(n * h * w)])
    put("FuzzIDX", f"pair_{n}x{h}x{w}", idx_pair(labels, images))
    put("FuzzIDX", f"pair_{n}x{h}x{w}_gz", idx_pair(labels, images, True, True))
put("FuzzIDX", "images_only", idx([2, 2, 2], range(8)))
put("FuzzIDX", "images_only_gz", gz(idx([2, 2, 2], range(8))))
put("FuzzIDX", "two_members_gz", gz(idx([3], [1, 2, 3])[:5]) + gz(idx([3], [1, 2, 3])[5:]))

# CIFAR: byte 0 selects CIFAR-10 (even) or CIFAR-100 (odd), then the file.
rec10 = bytes([3]) + bytes((i * 5) % 256 for i in range(3072))
rec100 = bytes([1, 42]) + bytes((i * 3) % 256 for i in range(3072))
put("FuzzCIFAR", "cifar10_1", b"\x00" + rec10)
put("FuzzCIFAR", "cifar10_2_gz", b"\x00" + gz(rec10 + rec10))
put("FuzzCIFAR", "cifar100_1", b"\x01" + rec100)
put("FuzzCIFAR", "cifar100_1_gz", b"\x01" + gz(rec100))


# safetensors as LotteryKit (and the reference implementation) write them.
def safetensors(tensors, metadata=None):
    header, data, off = {}, b"", 0
    for name, (dtype, shape, raw) in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    js = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + data


f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
put("FuzzSafetensors", "mask", safetensors(
    [("fc1.weight", ("F32", [2, 3], f32(1, 0, 1, 1, 0, 1))), ("fc2.weight", ("F32", [3], f32(1, 1, 0)))],
    {"density": "0.6666"}))
put("FuzzSafetensors", "checkpoint", safetensors(
    [("fc.bias", ("F32", [2], f32(0.5, -0.5))), ("fc.weight", ("F32", [2, 2], f32(1, 2, 3, 4))),
     ("optimizer.fc.weight.momentum", ("F64", [2, 2], struct.pack("<4d", 0.1, 0.2, 0.3, 0.4))),
     ("bn.num_batches_tracked", ("I64", [], struct.pack("<q", 7)))],
    {"format": "lotterykit-checkpoint-1", "model": "mnist_lenet_300_100", "step": "12",
     "optimizer_steps": "12"}))
put("FuzzSafetensors", "empty_tensor", safetensors([("e", ("F32", [0, 4], b""))]))
put("FuzzSafetensors", "no_tensors", safetensors([], {"k": "v"}))

# Run-folder JSON files.
put("FuzzRunJSON", "summary.json", json.dumps({
    "run_dir": "lth_runs/train_0123456789abcdef", "test_accuracy": 0.9712, "test_loss": 0.0931,
    "best_test_accuracy": 0.9731, "validation_accuracy": None, "early_stop_step": None, "steps": 938,
    "seconds": 12.5, "conv_backends": {"conv1": "im2col"}}, sort_keys=True) + "\n")
put("FuzzRunJSON", "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in [
    {"step": 0, "epoch": 0, "split": "test", "loss": 2.3, "accuracy": 0.1, "lr": 0.1, "seconds": 0.1},
    {"step": 469, "epoch": 1, "split": "validation", "loss": 0.2, "accuracy": 0.95, "lr": 0.1,
     "seconds": 5.2}]))
put("FuzzRunJSON", "hparams.json", json.dumps({
    "kind": "train", "hparams": {"model": "mnist_lenet_300_100", "training_steps": "2ep", "lr": 0.1,
                                 "milestones": [], "nesterov": False, "seed": 0},
    "provenance": {"lotterykit_version": "0.1.0", "git_commit": "unknown", "threads": 2}},
    sort_keys=True, indent=2) + "\n")
put("FuzzRunJSON", "sparsity.json", json.dumps({
    "tensors": [{"name": "fc1.weight", "total": 6, "remaining": 4}], "total": 6, "remaining": 4,
    "density": 0.6667}, sort_keys=True, indent=2) + "\n")

# Step strings and level lists.
for s in ["2ep", "500it", "1ep500it", "0it", " 3ep ", "0-3,5,7", "2", "10-12"]:
    put("FuzzSteps", s.strip().replace(",", "_") or "blank", s)

# pattern\nname
for p, n in [("blocks.*.conv1.weight", "blocks.3.conv1.weight"), ("fc*", "fc.weight"),
             ("*.weight", "layer1.0.conv2.weight"), ("fc", "fc.weight"), ("a*b*c", "aXbYbZc")]:
    put("FuzzPatterns", p.replace("*", "_star_") + "__" + n, p + "\n" + n)
