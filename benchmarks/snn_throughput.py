"""SNN training throughput and peak memory (issue 3's protocol), JSON lines out.

    JAX_PLATFORMS=cpu python -m benchmarks.snn_throughput --seconds=20 --repeats=3

Workloads (rate coding inside the step, full BPTT, Adam 1e-3, cross-entropy on
output spike counts, LIF beta 0.9, threshold 1, subtract reset (detached),
fast-sigmoid slope 25):
  mlp   784 inputs over T=25, LIF 256, LIF 10, batch 128;
  conv  12C5-MP2-LIF-64C5-MP2-LIF-FC10-LIF on 28x28, T=25, batch 64.
Each is timed three ways: through the library (`snn.network.Network`, layer by
layer: each layer's stateless part on all T*B frames at once, then its neuron
scan), the library with `schedule="step"` (one scan over time through every
layer, the recurrent-net order), and the per-step computation hand-written in
plain JAX, to measure the abstraction's cost. Per row: warm-up step, then `--seconds` of
steps, `--repeats` times; the median samples/s and the process's peak RSS.
`--workloads=onb` adds the Open Neuromorphic shape (Linear + LIF, 16,384
neurons, batch 16, T=500, forward + backward) with and without `jax.checkpoint`
(XLA's temp-buffer size from `memory_analysis()`).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from snn import encoding, network, neurons, surrogate

_SECONDS = flags.DEFINE_float("seconds", 20.0, "Timed seconds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats (median reported).")
_WORKLOADS = flags.DEFINE_list("workloads", ["mlp", "conv"], "mlp, conv, onb.")
_DENSE_IN_SCAN = flags.DEFINE_bool(
    "dense_in_scan",
    True,
    "Library dense layers: per-step matmuls in the scan (CPU: cache-friendly) "
    "or one (T*B, n) matmul (GPU: 16-row matmuls are memory-bound).",
)

T = 25
LIF = neurons.LIF(beta=0.9, threshold=1.0, reset="subtract", scale=25.0)


def library_loss(net):
    def loss(params, spikes, labels):
        return encoding.count_cross_entropy(net.apply(params, spikes)["spikes"], labels)

    return loss


def plain_loss(net):
    """The same network as one scan over time, every layer inside the step."""
    spike = surrogate.get("fast_sigmoid", 25.0)

    def loss(params, spikes, labels):
        def body(membranes, x):
            new = []
            for i, layer in enumerate(net.layers):
                x = network._weighted(layer, params["layers"][i], x)
                v = 0.9 * membranes[i] + x
                s = spike(v - 1.0)
                new.append(v - jax.lax.stop_gradient(s))
                x = s
            return new, x

        shapes = network.layer_shapes(net.layers, net.input_shape)
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


def time_training(net, loss_fn, batch_size) -> float:
    step, optimizer = make_step(net, loss_fn, batch_size)
    params = net.init(jax.random.key(0))
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch_size, 28, 28, 1), np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)
    key = jax.random.key(1)
    params, opt_state = step(params, opt_state, images, labels, key)
    jax.block_until_ready(params)
    rates = []
    for _ in range(_REPEATS.value):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < _SECONDS.value:
            key = jax.random.fold_in(key, steps)
            params, opt_state = step(params, opt_state, images, labels, key)
            steps += 1
        jax.block_until_ready(params)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def onb_rows():
    """Open Neuromorphic shape: forward + backward of Linear + LIF over T=500."""
    rows = []
    for remat in (False, True):
        net = network.Network(
            network.mlp_layers((), 16384),
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
    del argv
    workloads = {
        "mlp": (network.mlp_layers((256,)), (784,), 128),
        "conv": (network.cnn_layers(), (28, 28, 1), 64),
    }
    for name in _WORKLOADS.value:
        if name == "onb":
            for row in onb_rows():
                print(json.dumps(row), flush=True)
            continue
        layers, input_shape, batch_size = workloads[name]
        net = network.Network(
            layers, input_shape, LIF, dense_in_scan=_DENSE_IN_SCAN.value
        )
        step_net = dataclasses.replace(net, schedule="step")
        for impl, loss_fn in (
            ("library", library_loss(net)),
            ("library_step", library_loss(step_net)),
            ("plain_jax", plain_loss(net)),
        ):
            rate = time_training(net, loss_fn, batch_size)
            row = {
                "workload": f"snn_{name}",
                "impl": impl,
                "dense_in_scan": _DENSE_IN_SCAN.value,
                "samples_per_second": round(rate, 1),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "device": jax.devices()[0].device_kind,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
