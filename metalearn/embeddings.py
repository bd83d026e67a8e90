"""Conv-4: the embedding network of Matching Networks, ProtoNets and MAML.

Four blocks of [3x3 conv (64 filters, SAME), BatchNorm, ReLU, 2x2 max-pool]
(Vinyals et al. 2016, arXiv:1606.04080; Snell et al. 2017, arXiv:1703.05175;
Finn et al. 2017, arXiv:1703.03400). 28x28 inputs give 28-14-7-3-1, so a 64-d
embedding; 84x84 gives 5x5x64 = 1600-d (`output_dim`). Pooling floors odd
sizes, as PyTorch's `MaxPool2d(2)` does.

Parameters are a plain pytree of arrays, so MAML can differentiate through
per-task copies and ProtoNets can share one copy. The forward takes a
meta-batch `(E, B, H, W, C)` and folds it into one `(E*B, ...)` convolution
batch (weights are shared), while BatchNorm statistics stay per episode: a
folded meta-batch gives the same numbers as embedding each episode on its own.

Each block computes `pool(relu(BN(conv)))` as `relu(BN(pool'(conv)))`, where
pool' takes each window's max or min by the sign of the BN scale: the same
numbers on a quarter of the pixels (`affine_relu_pool`). With batch
statistics and the matmul convolution, a whole block runs as
`conv_block.block`, whose backward is written by hand (`block_vjp`; 1.3x the
ProtoNet step on CPU, README.md "Speed and memory").

BatchNorm modes:
  `batch`         per-episode batch statistics; running averages updated
                  (training, PyTorch momentum 0.1 with the unbiased variance).
  `transductive`  per-episode batch statistics, running averages untouched
                  (test-time, as MAML evaluates).
  `running`       the running averages (PyTorch's `model.eval()`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metalearn import conv_block, conv_matmul, winograd
from shared import draws

BN_MODES = ("batch", "transductive", "running")
# `auto`: `matmul` on CPU (patches x matmul and a mask max-pool backward,
# `metalearn/conv_matmul.py`: faster than XLA:CPU's convolutions here), `xla`
# on accelerators (cuDNN and friends run `lax.conv` well).
CONV_IMPLS = ("auto", "xla", "winograd", "matmul")
# Winograd F(2x2, 3x3) only pays on maps of at least this size: on Conv-4's
# 7x7 and 3x3 maps its transforms cost more than they save (benchmarks/
# metalearn_conv.py), and the 1-channel first layer has nothing to save.
WINOGRAD_MIN_SIZE = 8
_EPSILON = 1e-5


def output_dim(size: int, hidden: int = 64, depth: int = 4) -> int:
    """Embedding size of a (size, size) input."""
    for _ in range(depth):
        size //= 2
    if size < 1:
        raise ValueError(f"a {depth}-block Conv-4 needs inputs of at least 2**{depth}")
    return hidden * size * size


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`jax.random.normal(key, shape)`, the same numbers, drawn flat
    (`shared.draws`: XLA:CPU compiles a 4-d draw 4-6x slower than a vector)."""
    return draws.flat(jax.random.normal, key, shape)


def init(key: jax.Array, in_channels: int = 1, hidden: int = 64, depth: int = 4):
    """Returns `(params, stats)`: conv weights + BN affine, and BN running stats.

    params: {"conv": [(3, 3, C_in, hidden)] * depth,
             "scale": [(hidden,)] * depth, "shift": [(hidden,)] * depth}
    stats:  {"mean": [(hidden,)] * depth, "var": [(hidden,)] * depth}
    """
    keys = jax.random.split(key, depth)
    channels = [in_channels] + [hidden] * depth
    # He-normal (untruncated: truncated normals take seconds to compile on CPU)
    params = {
        "conv": [
            normal(keys[i], (3, 3, channels[i], hidden))
            * jnp.sqrt(2.0 / (9 * channels[i]))
            for i in range(depth)
        ],
        "scale": [jnp.ones((hidden,)) for _ in range(depth)],
        "shift": [jnp.zeros((hidden,)) for _ in range(depth)],
    }
    stats = {
        "mean": [jnp.zeros((hidden,)) for _ in range(depth)],
        "var": [jnp.ones((hidden,)) for _ in range(depth)],
    }
    return params, stats


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool of (B, H, W, C), flooring odd sizes; reshape+max is 1.5x
    faster than `reduce_window` on XLA:CPU (shared/PERF-NOTES.md)."""
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def resolve_conv_impl(conv_impl: str) -> str:
    """`auto` -> `matmul` on CPU, `xla` elsewhere; other names unchanged."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r}; use one of {CONV_IMPLS}")
    if conv_impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return conv_impl


def affine_relu_pool(
    h: jax.Array, scale: jax.Array, shift: jax.Array, mask_pool: bool = False
) -> jax.Array:
    """`max_pool_2x2(relu(h * scale + shift))` with the pool first.

    BatchNorm then ReLU is, per channel, a monotone map of `h`: non-decreasing
    where `scale >= 0`, non-increasing where `scale < 0`. So the max over a 2x2
    window of the activations is the activation of the window's max (or min)
    of `h`: the same values and gradients (up to float rounding), with the
    affine map, ReLU and their backward passes on a quarter of the pixels.

    Args:
      h: (E, B, H, W, C) conv outputs.
      scale, shift: broadcastable to (E, 1, 1, 1, C).
      mask_pool: pool with `conv_matmul.max_pool_2x2` (the same values, a
        faster backward on CPU; a tie's gradient goes to its first maximum),
        the window min as -max(-h).

    Returns:
      (E, B, H // 2, W // 2, C).
    """
    e, b, height, width, c = h.shape
    h = h[:, :, : height // 2 * 2, : width // 2 * 2]
    if mask_pool:
        sign = jnp.where(scale >= 0, 1.0, -1.0).astype(h.dtype)
        flat = (h * sign).reshape(e * b, *h.shape[2:])
        pooled = conv_matmul.max_pool_2x2(flat)
        extreme = sign * pooled.reshape(e, b, *pooled.shape[1:])
        return jax.nn.relu(extreme * scale + shift)
    windows = h.reshape(e, b, height // 2, 2, width // 2, 2, c)
    extreme = jnp.where(scale >= 0, windows.max(axis=(3, 5)), windows.min(axis=(3, 5)))
    return jax.nn.relu(extreme * scale + shift)


def _conv(x: jax.Array, kernel: jax.Array, chunk: int, impl: str) -> jax.Array:
    """3x3 SAME conv of (B, H, W, C); `chunk` > 0 splits B into cache-sized
    pieces inside the same graph (faster on CPU for B >> 16, PERF-NOTES).
    `impl="winograd"` runs maps of at least `WINOGRAD_MIN_SIZE` with more
    than one input channel as Winograd F(2x2, 3x3) batched matmuls
    (`metalearn/winograd.py`), the rest with `lax.conv`. `impl="matmul"`
    is patches x matmul in blocks of `chunk` images (0: its own
    `conv_matmul.BLOCK_ROWS`)."""
    if impl == "matmul":
        rows = chunk * x.shape[1] * x.shape[2] if chunk > 0 else conv_matmul.BLOCK_ROWS
        return conv_matmul.conv3x3(x, kernel, rows)
    use_winograd = (
        impl == "winograd" and x.shape[1] >= WINOGRAD_MIN_SIZE and x.shape[-1] > 1
    )

    def conv(part):
        if use_winograd:
            return winograd.conv3x3(part, kernel)
        return jax.lax.conv_general_dilated(
            part, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    if chunk <= 0 or x.shape[0] <= chunk:
        return conv(x)
    pieces = [conv(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return jnp.concatenate(pieces)


def apply(
    params,
    stats,
    x: jax.Array,
    *,
    mode: str = "batch",
    momentum: float = 0.1,
    chunk: int = 0,
    conv_impl: str = "auto",
    block_vjp: bool | None = None,
):
    """Embeds a meta-batch of image sets.

    Args:
      params, stats: from `init`.
      x: (E, B, H, W, C) float32; BatchNorm statistics are taken per episode
        (over B, H, W) in `batch`/`transductive` modes.
      mode: one of `BN_MODES`.
      momentum: running-average rate (PyTorch convention) in `batch` mode.
      chunk: conv batch chunk size (0 = one conv over all E*B images).
      conv_impl: one of `CONV_IMPLS` (`_conv`, `resolve_conv_impl`); the same
        numbers up to rounding.
      block_vjp: run each block as `conv_block.block` (matmul conv, BatchNorm,
        ReLU and pool with one hand-written backward) instead of leaving the
        backward to autodiff; the same gradients up to rounding. None: on
        with `conv_impl` `matmul` in `batch` mode (ProtoNets, Matching Nets),
        off otherwise. MAML (`transductive`) sets it per forward: on where the
        forward is differentiated once, off for second order's support
        forward, whose backward is differentiated again inside `lax.scan`,
        where at tied pool windows it gives a different subgradient (1.7e-3
        relative on Omniglot; README, "Speed and memory").

    Returns:
      (features (E, B, D), new_stats); new_stats is `stats` unless mode=`batch`.
    """
    if mode not in BN_MODES:
        raise ValueError(f"mode={mode!r}; use one of {BN_MODES}")
    conv_impl = resolve_conv_impl(conv_impl)
    if block_vjp is None:
        block_vjp = conv_impl == "matmul" and mode == "batch"
    if block_vjp and (conv_impl != "matmul" or mode == "running"):
        raise ValueError(
            f"block_vjp needs conv_impl='matmul' and batch statistics, got "
            f"conv_impl={conv_impl!r}, mode={mode!r}"
        )
    episodes, batch = x.shape[:2]
    h = x.reshape(episodes * batch, *x.shape[2:])
    new_mean, new_var = [], []
    for i, kernel in enumerate(params["conv"]):
        count = batch * h.shape[1] * h.shape[2]  # pixels per episode and channel
        if block_vjp:
            rows = chunk * h.shape[1] * h.shape[2] if chunk > 0 else 0
            h, mean, var = conv_block.block(
                h,
                kernel,
                params["scale"][i],
                params["shift"][i],
                episodes,
                rows or conv_matmul.BLOCK_ROWS,
                _EPSILON,
            )
            if mode == "batch":
                _update_running(stats, i, mean, var, count, momentum, new_mean, new_var)
            continue
        h = _conv(h, kernel, chunk, conv_impl)
        h = h.reshape(episodes, batch, *h.shape[1:])
        if mode == "running":
            mean, var = stats["mean"][i], stats["var"][i]
        else:
            mean = h.mean(axis=(1, 2, 3), keepdims=True)
            var = jnp.square(h - mean).mean(axis=(1, 2, 3), keepdims=True)
            if mode == "batch":
                _update_running(stats, i, mean, var, count, momentum, new_mean, new_var)
        scale = params["scale"][i] * jax.lax.rsqrt(var + _EPSILON)
        h = affine_relu_pool(
            h, scale, params["shift"][i] - mean * scale, conv_impl == "matmul"
        )
        h = h.reshape(episodes * batch, *h.shape[2:])
    features = h.reshape(episodes, batch, -1)
    if mode == "batch":
        stats = {"mean": new_mean, "var": new_var}
    return features, stats


def _update_running(stats, i, mean, var, count, momentum, new_mean, new_var):
    """Appends layer `i`'s running mean and (unbiased) variance, moved by the
    mean over episodes of the batch statistics `mean`, `var` (E, 1, 1, 1, C)."""
    unbiased = var.mean(axis=(0, 1, 2, 3)) * count / max(count - 1, 1)
    batch_mean = jax.lax.stop_gradient(mean.mean(axis=(0, 1, 2, 3)))
    new_mean.append((1 - momentum) * stats["mean"][i] + momentum * batch_mean)
    new_var.append(
        (1 - momentum) * stats["var"][i] + momentum * jax.lax.stop_gradient(unbiased)
    )


def embed_episodes(
    params, stats, episodes, *, mode: str, chunk: int = 0, conv_impl: str = "auto"
):
    """Embeds support and query of a meta-batch together, as one batch per episode
    (Snell et al. concatenate them, so BatchNorm sees both).

    Args:
      episodes: an `Episode` with a leading (E,) axis.

    Returns:
      (support (E, N*K, D), query (E, N*Q, D), new_stats).
    """
    num_support = episodes.support_x.shape[1]
    images = jnp.concatenate([episodes.support_x, episodes.query_x], axis=1)
    features, stats = apply(
        params, stats, images, mode=mode, chunk=chunk, conv_impl=conv_impl
    )
    return features[:, :num_support], features[:, num_support:], stats
