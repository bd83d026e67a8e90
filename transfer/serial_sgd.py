"""The serial schedule under plain SGD, with layer 0's update deferred exactly.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.2 (serial tournaments: each path is
trained by gradient descent for T minibatches) and 2.3 (binary MNIST: linear
modules, T = 50 minibatches of 16, plain SGD). Same results as the serial
schedule's gathered trainer (`transfer.schedules`), up to float rounding.

Where the time goes. A path step on binary MNIST is ~3 MFLOP, almost all of it in
layer 0 (784 pixels x N*units columns): the forward (B, 784) x (784, N*units) and
the weight gradient x^T delta, (784, B) x (B, N*units). With B = 16 the weight
gradient's contraction is only 16 long, and XLA:CPU runs it at under half the
forward's FLOP rate (measured: ~30 us forward, ~65-90 us gradient per step).

The trick: SGD's layer-0 update is linear in the weights, and the inputs are
known in advance. Within a block of k minibatches starting at weights W,

  W_j = W - lr * sum_{s<j} x_s^T delta_s,
  x_j W_j = x_j W - lr * sum_{s<j} (x_j x_s^T) delta_s,

where delta_s = dLoss_s / d(x_s W_s + b_s) (B, N*units) and x_j x_s^T is a
(B, B) block of the Gram matrix of the block's inputs. So each block computes
its k forwards as ONE (kB, 784) x (784, N*units) GEMM at the block's start
weights, the Gram matrix (kB, 784) x (784, kB) (data only), corrects step j's
pre-activations by the earlier steps' deltas ((B, kB) x (kB, N*units), tiny),
and applies the block's k weight updates at its end as ONE (784, kB) x
(kB, N*units) GEMM. Every step still takes its gradient at the exact current
weights (this is plain SGD, not a delayed or averaged update); only the float
rounding differs. Layers 1.. (inputs not known in advance), the biases and the
readout are updated after every minibatch as usual. The Gram matrix adds
B k 784 multiply-adds per step (k/3.75 of the direct weight gradient's for
N*units = 60), so more FLOPs overall, but in GEMMs with long contractions: on
layer 0 alone (ad-hoc script, 2-core CPU) k = 1 / 2 / 5 / 10 took 128 / 116 /
74 / 95 us per step; k = 5 (the largest divisor of T up to `largest_block`)
is the default, and the whole GA round went from 71 to 87 tournaments/s
(`benchmarks/transfer_throughput.py`, serial_gathered vs serial).

Frozen modules (and a repeated gene's copy) have their delta columns zeroed
before they enter the correction or the update, so their weights change by
exactly 0 (bit-identical, as in `bank_updates.mask_updates`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from transfer import bank_updates, pathnet


def block_size(num_minibatches: int, largest_block: int = 5) -> int:
    """The largest divisor of T that is at most `largest_block`."""
    return max(
        k
        for k in range(1, min(largest_block, num_minibatches) + 1)
        if num_minibatches % k == 0
    )


def make_serial_sgd(spec: pathnet.PathNetSpec, rate: float, largest_block: int = 5):
    """The serial trainer for linear modules under `optax.sgd(rate)`.

    Returns `train(params, frozen (L, M), paths (S, L, N), images (S, T, B, in)
    uint8, labels (S, T, B)) -> (params, (fitness (S,), loss (S,)))`: the S paths
    trained one after the other, each for its T minibatches, fitness being the
    mean pre-update training accuracy (as `transfer.schedules`' trainers).
    """
    if spec.module != "linear":
        raise ValueError("make_serial_sgd needs linear modules (spec.module).")
    last = spec.num_layers - 1

    def loss_from_first(pre0, rest, keep, labels):
        """Loss from layer 0's bias-free pre-activations (B, N*units)."""
        pre = (pre0 + rest["b0"]).reshape(pre0.shape[0], -1, spec.units)
        h = bank_updates.combine_modules(pre, keep[0], spec, last == 0)
        for index, layer in enumerate(rest["layers"], start=1):
            out = pathnet.side_by_side(layer["w"], layer["b"], h, spec)
            h = bank_updates.combine_modules(out, keep[index], spec, index == last)
        logits = h @ rest["head"]["w"] + rest["head"]["b"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    grad_fn = jax.value_and_grad(loss_from_first, argnums=(0, 1), has_aux=True)

    def train(params, frozen, paths, images, labels):
        num_minibatches, batch = labels.shape[1:]
        k = block_size(num_minibatches, largest_block)

        def one_path(params, inputs):
            path, path_images, path_labels = inputs
            keep, trainable, start = bank_updates.start_path(
                params["layers"], frozen, path, spec.units
            )
            masks = {
                "b0": trainable[0],
                "layers": tuple({"w": row, "b": row} for row in trainable[1:]),
                "head": jax.tree.map(lambda _: True, params["head"]),
            }

            def one_block(carry, block):
                w0, rest = carry
                block_images, block_labels = block  # (k, B, in), (k, B)
                x = block_images.reshape(k * batch, -1).astype(jnp.float32) / 255.0
                pre = (x @ w0).reshape(k, batch, -1)  # at the block's start weights
                gram = (x @ x.T).reshape(k, batch, k * batch)
                deltas = jnp.zeros((k * batch, w0.shape[-1]), w0.dtype)
                stats = []
                for j in range(k):  # unrolled: k is small
                    pre_j = pre[j] - rate * (gram[j] @ deltas) if j else pre[j]
                    (loss, acc), (delta, grads) = grad_fn(
                        pre_j, rest, keep, block_labels[j]
                    )
                    delta = jnp.where(trainable[0], delta, 0.0)
                    deltas = jax.lax.dynamic_update_slice(deltas, delta, (j * batch, 0))
                    rest = jax.tree.map(
                        lambda p, g, m: jnp.where(m, p - rate * g, p),
                        rest,
                        grads,
                        masks,
                    )
                    stats.append(jnp.stack([loss, acc]))
                return (w0 - rate * (x.T @ deltas), rest), jnp.stack(stats)

            rest = {
                "b0": start[0]["b"],
                "layers": start[1:],
                "head": params["head"],
            }
            blocks = (
                path_images.reshape(-1, k, *path_images.shape[1:]),
                path_labels.reshape(-1, k, batch),
            )
            (w0, rest), stats = jax.lax.scan(one_block, (start[0]["w"], rest), blocks)
            trained = ({"w": w0, "b": rest["b0"]}, *rest["layers"])
            layers = bank_updates.scatter_path(params["layers"], path, trained, start)
            loss, acc = stats.reshape(-1, 2).mean(axis=0)
            return {"layers": layers, "head": rest["head"]}, (acc, loss)

        return jax.lax.scan(one_path, params, (paths, images, labels))

    return train
