"""SNN training throughput and peak memory (issue 3's protocol), JSON lines out.

    JAX_PLATFORMS=cpu python -m benchmarks.snn_throughput --seconds=20 --repeats=3

Workloads (rate coding inside the step, full BPTT, Adam 1e-3, cross-entropy on
output spike counts, LIF beta 0.9, threshold 1, subtract reset (detached),
fast-sigmoid slope 25):
  mlp   784 inputs over T=25, LIF 256, LIF 10, batch 128;
  conv  12C5-MP2-LIF-64C5-MP2-LIF-FC10-LIF on 28x28, T=25, batch 64.
Each is timed four ways: through the library (`snn.network.Network`, layer by
layer: convs on all T*B frames in unrolled chunks of `--chunk` frames, dense
matmuls per step in the neuron scan; `--conv` picks its conv kernels) and the
same computation hand-written in plain JAX with XLA's conv (`plain_jax`; with
`--conv=lax` it measures the abstraction's cost, by default it is also the
baseline of `snn.conv`'s kernels); then the library
with `schedule="step"` (one scan over time through every layer, the
recurrent-net order) and that per-step computation in plain JAX
(`plain_jax_step`); `--step_rows=` skips those two. Per row: warm-up step,
then `--seconds` of steps, `--repeats` times; the median samples/s and the
process's peak RSS.
Each row also records the first call's seconds (compile + one step) and the
glibc heap settings in force (`--heap`, `shared/heap.py`: by default on the
CPU XLA:CPU's per-call temp buffer stays in the heap instead of being mapped
and page-faulted each step; SNN-CONV 1.5x faster here, snn/README.md), made
by `--heap` or exported as `MALLOC_*` variables.
`--workloads=onb` adds the Open Neuromorphic shape (Linear + LIF, 16,384
neurons, batch 16, T=500, forward + backward) with and without `jax.checkpoint`
(XLA's temp-buffer size from `memory_analysis()`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from shared import heap
from snn import encoding, network, neurons, surrogate
from snn import layers as layers_lib

_HEAP = heap.define_flag()
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Timed seconds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats (median reported).")
_WORKLOADS = flags.DEFINE_list("workloads", ["mlp", "conv"], "mlp, conv, onb.")
_CHUNK = flags.DEFINE_integer(
    "chunk", 32, "Conv frames per unrolled call (Network.chunk; 0 = all T*B)."
)
_STEP_ROWS = flags.DEFINE_list(
    "step_rows",
    ["mlp", "conv"],
    "Workloads that also time the step schedule (library and plain JAX).",
)
_CONV = flags.DEFINE_enum(
    "conv",
    "auto",
    ["auto", "lax", "matmul"],
    "Library conv kernels (Network.conv): auto = snn.conv's matmul kernels on "
    "CPU; the plain_jax rows always use XLA's conv.",
)
_DENSE_IN_SCAN = flags.DEFINE_bool(
    "dense_in_scan",
    True,
    "Library dense layers: per-step matmuls in the scan (CPU: cache-friendly) "
    "or one (T*B, n) matmul (GPU: 16-row matmuls are memory-bound).",
)

T = 25
HEAP_MADE = {}  # the settings `heap.configure` made in `main`
LIF = neurons.LIF(beta=0.9, threshold=1.0, reset="subtract", scale=25.0)


def library_loss(net):
    def loss(params, spikes, labels):
        return encoding.count_cross_entropy(net.apply(params, spikes)["spikes"], labels)

    return loss


def lif_scan(currents, weighted=None):
    """Hand-written LIF over time; `weighted` maps each step's input first."""
    spike = surrogate.get("fast_sigmoid", 25.0)

    def body(v, x):
        v = 0.9 * v + (x if weighted is None else weighted(x))
        s = spike(v - 1.0)
        return v - jax.lax.stop_gradient(s), s

    first = currents[0] if weighted is None else weighted(currents[0])
    return jax.lax.scan(body, jnp.zeros_like(first), currents)[1]


def plain_layer_loss(net):
    """The library's fast path by hand: convs (+ 2x2 max-pool) on all T*B
    frames in unrolled chunks of `--chunk`, dense matmuls per step in the LIF
    scan."""

    def conv_pool(w, b, x):
        x = jax.lax.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        n, h, width, c = x.shape
        return (x + b).reshape(n, h // 2, 2, width // 2, 2, c).max(axis=(2, 4))

    def loss(params, spikes, labels):
        x = spikes
        for layer, p in zip(net.layers, params["layers"], strict=True):
            if layer.kind == "dense":
                x = lif_scan(
                    x, lambda x, p=p: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
                )
                continue
            frames = x.reshape(-1, *x.shape[2:])
            size = _CHUNK.value or len(frames)
            out = [
                conv_pool(p["w"], p["b"], frames[i : i + size])
                for i in range(0, len(frames), size)
            ]
            x = lif_scan(jnp.concatenate(out).reshape(*x.shape[:2], *out[0].shape[1:]))
        return encoding.count_cross_entropy(x, labels)

    return loss


def plain_loss(net):
    """The same network as one scan over time, every layer inside the step."""
    spike = surrogate.get("fast_sigmoid", 25.0)

    def loss(params, spikes, labels):
        def body(membranes, x):
            new = []
            for i, layer in enumerate(net.layers):
                x = layers_lib.weighted(layer, params["layers"][i], x)
                v = 0.9 * membranes[i] + x
                s = spike(v - 1.0)
                new.append(v - jax.lax.stop_gradient(s))
                x = s
            return new, x

        shapes = layers_lib.layer_shapes(net.layers, net.input_shape)
        init = [jnp.zeros((spikes.shape[1], *out)) for _, out in shapes]
        _, out = jax.lax.scan(body, init, spikes)
        return encoding.count_cross_entropy(out, labels)

    return loss


def make_step(net, loss_fn, batch_size):
    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, images, labels, key):
        spikes = encoding.rate(key, images.reshape(batch_size, *net.input_shape), T)
        grads = jax.grad(loss_fn)(params, spikes, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step, optimizer


def time_training(net, loss_fn, batch_size) -> tuple[float, float]:
    """(median samples/s, seconds of the first call: compile + one step)."""
    step, optimizer = make_step(net, loss_fn, batch_size)
    params = net.init(jax.random.key(0))
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch_size, 28, 28, 1), np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)
    key = jax.random.key(1)
    start = time.perf_counter()
    params, opt_state = step(params, opt_state, images, labels, key)
    jax.block_until_ready(params)
    compile_seconds = time.perf_counter() - start
    rates = []
    for _ in range(_REPEATS.value):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < _SECONDS.value:
            key = jax.random.fold_in(key, steps)
            params, opt_state = step(params, opt_state, images, labels, key)
            steps += 1
        jax.block_until_ready(params)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates), compile_seconds


def onb_rows():
    """Open Neuromorphic shape: forward + backward of Linear + LIF over T=500."""
    rows = []
    for remat in (False, True):
        net = network.Network(
            layers_lib.mlp_layers((), 16384),
            (16384,),
            LIF,
            remat=remat,
            dense_in_scan=_DENSE_IN_SCAN.value,
        )
        params = net.init(jax.random.key(0))
        x = jax.random.bernoulli(jax.random.key(1), 0.1, (500, 16, 16384))

        def loss(params, x, net=net):
            return net.apply(params, x.astype(jnp.float32))["spikes"].sum()

        grad = jax.jit(jax.grad(loss))
        compiled = grad.lower(params, x).compile()
        jax.block_until_ready(grad(params, x))
        seconds = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            jax.block_until_ready(grad(params, x))
            seconds.append(time.perf_counter() - start)
        memory = compiled.memory_analysis()
        rows.append(
            {
                "workload": "onb_linear_lif_16384_b16_t500",
                "remat": remat,
                "dense_in_scan": _DENSE_IN_SCAN.value,
                "seconds_fwd_bwd": statistics.median(seconds),
                "xla_temp_mib": getattr(memory, "temp_size_in_bytes", 0) / 2**20,
            }
        )
    return rows


def main(argv):
    HEAP_MADE.update(heap.configure(_HEAP.value, area="snn"))  # before JAX starts
    del argv
    workloads = {
        "mlp": (layers_lib.mlp_layers((256,)), (784,), 128),
        "conv": (layers_lib.cnn_layers(), (28, 28, 1), 64),
    }
    for name in _WORKLOADS.value:
        if name == "onb":
            for row in onb_rows():
                print(json.dumps(row), flush=True)
            continue
        layers, input_shape, batch_size = workloads[name]
        net = network.Network(
            layers,
            input_shape,
            LIF,
            dense_in_scan=_DENSE_IN_SCAN.value,
            chunk=_CHUNK.value,
            conv=_CONV.value,
        )
        step_net = dataclasses.replace(net, schedule="step")
        for impl, loss_fn in (
            ("library", library_loss(net)),
            ("plain_jax", plain_layer_loss(net)),
            ("library_step", library_loss(step_net)),
            ("plain_jax_step", plain_loss(net)),
        ):
            if impl.endswith("step") and name not in _STEP_ROWS.value:
                continue
            rate, compile_seconds = time_training(net, loss_fn, batch_size)
            row = {
                "workload": f"snn_{name}",
                "impl": impl,
                "dense_in_scan": _DENSE_IN_SCAN.value,
                "chunk": _CHUNK.value,
                "conv": net.conv_impl() if impl.startswith("library") else "lax",
                "samples_per_second": round(rate, 1),
                "compile_seconds": round(compile_seconds, 1),
                # glibc malloc settings: XLA:CPU maps its temp buffer (230 MiB
                # for SNN-CONV) afresh each call unless the heap keeps it
                "heap": _HEAP.value,
                "malloc": {
                    **HEAP_MADE,
                    **{k: v for k, v in os.environ.items() if k in heap.ENV_NAMES},
                },
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "device": jax.devices()[0].device_kind,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
