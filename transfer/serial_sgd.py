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

Second pass (profiled with `jax.profiler` and the compiled HLO, P = 64): a block
of 5 steps ran ~170 XLA kernels, and the update x^T delta had been canonicalised
into a dot with a transposed operand that XLA:CPU ran off its YNNPACK GEMM path
(the slowest kernel of the block). Now: layer 0's gathered weights are kept
TRANSPOSED, (N*units, 784), and the block's deltas are transposed behind an
`optimization_barrier` (else XLA folds the transpose back into the dot), so all
three layer-0 GEMMs run on YNNPACK; only the strictly lower block triangle of
the Gram matrix is computed (rows B.., columns ..(k-1)B), one block AHEAD (it is
data only, so nothing in the current block waits for it); the loss's logit
gradient is written out, (softmax - one-hot) / B (a sigmoid for two classes),
and loss and accuracy are computed in bulk from the stored pre-update logits
after the scan (optax's label gather, its backward scatter and the argmax were
~8 kernels per step that no later step needs). About 140 kernels per block. Same SGD
up to float rounding (tests: the Python loop, the gathered trainer); the GA
round's speed: transfer/README.md.

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


def step_statistics(logits: jax.Array, labels: jax.Array):
    """Per-minibatch mean loss and accuracy: logits (..., B, C), labels (..., B).

    Computed in bulk after the serial scan, from each step's pre-update logits:
    a step's loss is (16, 2) numbers, so inside the scan its cost is the number
    of XLA kernels (the reductions, optax's label gather and the argmax were ~8
    per step), none of which the next step needs.
    """
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(-1), (logits.argmax(-1) == labels).mean(-1)


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

    def logits_from_first(pre0, rest, keep):
        """Logits from layer 0's bias-free pre-activations (B, N*units)."""
        pre = (pre0 + rest["b0"]).reshape(pre0.shape[0], -1, spec.units)
        h = bank_updates.combine_modules(pre, keep[0], spec, last == 0)
        for index, layer in enumerate(rest["layers"], start=1):
            out = pathnet.side_by_side(layer["w"], layer["b"], h, spec)
            h = bank_updates.combine_modules(out, keep[index], spec, index == last)
        return h @ rest["head"]["w"] + rest["head"]["b"]

    def gradients(pre0, rest, keep, labels):
        """(logits, (d loss / d pre0, d loss / d rest)) of the mean softmax
        cross-entropy: its logit gradient is (softmax - one-hot) / B."""
        logits, backward = jax.vjp(
            lambda pre0, rest: logits_from_first(pre0, rest, keep), pre0, rest
        )
        onehot = labels[:, None] == jnp.arange(logits.shape[-1])
        if logits.shape[-1] == 2:  # softmax of two logits, elementwise: one kernel
            probs = jax.nn.sigmoid(logits - logits[:, ::-1])
        else:
            probs = jax.nn.softmax(logits)
        error = (probs - onehot) / logits.shape[0]
        return logits, backward(error)

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

            def floats(block_images):
                return block_images.reshape(k * batch, -1).astype(jnp.float32) / 255.0

            def lower_gram(x):
                """Step j needs x_j x_s^T for s < j only: the strictly lower block
                triangle lies in rows B.., columns ..(k-1)B (0.64 of the full
                Gram's FLOPs at k = 5)."""
                return x[batch:] @ x[:-batch].T if k > 1 else jnp.zeros(())

            blocks = (
                path_images.reshape(-1, k, *path_images.shape[1:]),
                path_labels.reshape(-1, k, batch),
            )
            last_block = blocks[0].shape[0] - 1

            def one_block(carry, block):
                # w0_t: layer 0's gathered weights TRANSPOSED, (N*units, in): the
                # update is then a plain (N*units, kB) x (kB, in) GEMM, not one
                # with a transposed (kB, in) operand (measured 1.3x on layer 0).
                w0_t, rest, gram = carry
                block_images, block_labels, index = block  # (k, B, in), (k, B), ()
                x = floats(block_images)
                # The NEXT block's Gram matrix (data only) is computed here, where
                # nothing in this block waits for it: XLA's executor can run it
                # beside this block's serial chain of small kernels.
                upcoming = jax.lax.dynamic_index_in_dim(
                    blocks[0], jnp.minimum(index + 1, last_block), keepdims=False
                )
                next_gram = lower_gram(floats(upcoming))
                pre = (x @ w0_t.T).reshape(k, batch, -1)  # at the block's start
                deltas, logits = [], []
                for j in range(k):  # unrolled: k is small
                    pre_j = pre[j]
                    if j:
                        rows = gram[(j - 1) * batch : j * batch, : j * batch]
                        pre_j = pre_j - rate * (rows @ jnp.concatenate(deltas))
                    step_logits, (delta, grads) = gradients(
                        pre_j, rest, keep, block_labels[j]
                    )
                    deltas.append(jnp.where(trainable[0], delta, 0.0))
                    rest = jax.tree.map(
                        lambda p, g, m: jnp.where(m, p - rate * g, p),
                        rest,
                        grads,
                        masks,
                    )
                    logits.append(step_logits)
                # The barrier keeps the transpose: without it XLA folds it into
                # the dot as a transposed operand, which falls off the fast
                # (YNNPACK) GEMM path onto a slower one.
                deltas_t = jax.lax.optimization_barrier(
                    (rate * jnp.concatenate(deltas)).T
                )
                return (w0_t - deltas_t @ x, rest, next_gram), jnp.stack(logits)

            rest = {
                "b0": start[0]["b"],
                "layers": start[1:],
                "head": params["head"],
            }
            first_gram = lower_gram(floats(blocks[0][0]))
            (w0_t, rest, _), logits = jax.lax.scan(
                one_block,
                (start[0]["w"].T, rest, first_gram),
                (*blocks, jnp.arange(last_block + 1)),
            )
            trained = ({"w": w0_t.T, "b": rest["b0"]}, *rest["layers"])
            layers = bank_updates.scatter_path(params["layers"], path, trained, start)
            return {"layers": layers, "head": rest["head"]}, logits

        params, logits = jax.lax.scan(one_path, params, (paths, images, labels))
        loss, acc = step_statistics(logits.reshape(*labels.shape, -1), labels)
        return params, (acc.mean(-1), loss.mean(-1))

    return train
