r"""Conv-4 forward + backward images/s with each 3x3 convolution implementation.

    JAX_PLATFORMS=cpu python -m benchmarks.metalearn_conv \
        [--batches=16,80] [--first=xla,patches,winograd] \
        [--rest=xla,winograd,winograd4] [--chunk=0] [--seconds=5] [--repeats=3]

Times `jax.grad` of a scalar loss of Conv-4 (4 x [3x3 conv 64, per-batch
BatchNorm, ReLU, 2x2 max-pool] on 28x28x1, `metalearn.embeddings`'s block)
w.r.t. the conv weights, for every combination of the first layer's
implementation (`--first`, C_in = 1) and the other layers' (`--rest`):
  xla        `lax.conv_general_dilated`
  patches    9 shifted copies x a (9*C_in, 64) matmul
  matmul     `conv_matmul.conv3x3`: the same in cache-sized blocks; a 1-channel
             input by broadcast multiply-adds with a custom weight gradient
  winograd   F(2x2, 3x3) (`metalearn/winograd.py`)
  winograd4  F(4x4, 3x3)
  winograd_big  F(2x2, 3x3) on maps of at least 8x8, `xla` on smaller ones
Compile, 3 warm-up calls, then `--seconds` of calls, `--repeats` times; one
JSON line per setting with the median images/s, the max |error| of the
features against the all-`xla` network, and the peak RSS of the process.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from metalearn import conv_matmul, embeddings, winograd
from shared import heap

_HEAP = heap.define_flag()
_BATCHES = flags.DEFINE_list("batches", ["16", "80"], "Image batch sizes.")
_FIRST = flags.DEFINE_list("first", ["xla", "patches", "winograd"], "Layer 1 convs.")
_REST = flags.DEFINE_list("rest", ["xla", "winograd", "winograd4"], "Layer 2-4 convs.")
_CHUNK = flags.DEFINE_integer("chunk", 0, "Split the batch in chunks (0 = off).")
_SECONDS = flags.DEFINE_float("seconds", 5.0, "Timed seconds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; the median is reported.")


def _xla(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


CONVS = {
    "xla": _xla,
    "patches": winograd.conv3x3_patches,
    "matmul": conv_matmul.conv3x3,  # blocked patches (thin: custom weight grad)
    "winograd": lambda x, k: winograd.conv3x3(x, k, winograd.F2X2),
    "winograd4": lambda x, k: winograd.conv3x3(x, k, winograd.F4X4),
    "winograd_big": lambda x, k: (  # the rule of `embeddings._conv`
        winograd.conv3x3(x, k)
        if x.shape[1] >= embeddings.WINOGRAD_MIN_SIZE
        else _xla(x, k)
    ),
}


def features(params, x, first: str, rest: str, chunk: int) -> jax.Array:
    """(B, 28, 28, 1) -> (B, 64) with per-batch BatchNorm statistics."""
    h = x
    for i, kernel in enumerate(params["conv"]):
        conv = CONVS[first if i == 0 else rest]
        if chunk and h.shape[0] > chunk:
            parts = [conv(h[j : j + chunk], kernel) for j in range(0, len(h), chunk)]
            h = jnp.concatenate(parts)
        else:
            h = conv(h, kernel)
        mean = h.mean(axis=(0, 1, 2))
        var = jnp.square(h - mean).mean(axis=(0, 1, 2))
        scale = params["scale"][i] * jax.lax.rsqrt(var + 1e-5)
        h = embeddings.affine_relu_pool(
            h[None], scale, params["shift"][i] - mean * scale
        )[0]
    return h.reshape(h.shape[0], -1)


def time_calls(fn, *args) -> float:
    """Median calls/s over the repeats."""
    for _ in range(3):
        jax.block_until_ready(fn(*args))
    rates = []
    for _ in range(_REPEATS.value):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < _SECONDS.value:
            jax.block_until_ready(fn(*args))
            calls += 1
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv) -> None:
    heap.configure(_HEAP.value, area="metalearn")  # before JAX starts its threads
    del argv
    for name in _FIRST.value + _REST.value:
        if name not in CONVS:
            raise app.UsageError(f"--first/--rest: unknown {name!r}; use {list(CONVS)}")
    params, _ = embeddings.init(jax.random.key(0))
    for batch in map(int, _BATCHES.value):
        x = jax.random.uniform(jax.random.key(1), (batch, 28, 28, 1))
        reference = jax.jit(features, static_argnums=(2, 3, 4))(
            params, x, "xla", "xla", 0
        )
        for first, rest in itertools.product(_FIRST.value, _REST.value):

            def loss(p, x, first=first, rest=rest):
                return jnp.square(features(p, x, first, rest, _CHUNK.value)).mean()

            grad = jax.jit(jax.grad(loss))
            start = time.perf_counter()
            grad = grad.lower(params, x).compile()
            compile_s = time.perf_counter() - start
            out = jax.jit(features, static_argnums=(2, 3, 4))(params, x, first, rest, 0)
            rate = time_calls(grad, params, x) * batch
            print(
                json.dumps(
                    {
                        "batch": batch,
                        "first": first,
                        "rest": rest,
                        "chunk": _CHUNK.value,
                        "images_per_second": round(rate, 1),
                        "max_abs_error": float(jnp.abs(out - reference).max()),
                        "compile_seconds": round(compile_s, 2),
                        "peak_rss_gb": resource.getrusage(
                            resource.RUSAGE_SELF
                        ).ru_maxrss
                        / 2**20,
                        "load_average_1min": os.getloadavg()[0],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
