"""How a GA round trains its 2K paths on the shared PathNet bank.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.2 (each path of a tournament is
trained for T minibatches, every path updating one shared set of modules) and
2.3 (binary MNIST: T = 50 minibatches of 16).

`transfer.genetic.make_round` draws 2K members for K binary tournaments and hands
their paths to one of two trainers (`schedule`). Both map `(params, opt_state,
frozen, paths (S, L, N), images (S, T, B, ...), labels (S, T, B))` to
`(params, opt_state, fitness (S,), loss (S,))`, S = 2K, fitness being the mean
accuracy on the path's T training minibatches, each measured before its update
(the paper's "classification error during training"):

  "serial":      `lax.scan` over the 2K paths, each a `lax.scan` over its T steps;
                 every update sees the bank left by the previous one. With K = 1 this
                 is exactly the paper's serial binary-MNIST algorithm (tournament
                 after tournament). With K > 1 the bank updates are still serial but
                 selection waits for the end of the round: a member picked in round
                 r cannot be a child born in round r. With a stateless optimizer
                 (SGD, the paper's) a path's N modules per layer are gathered once
                 (`bank_updates.gather_path`), trained for T steps as one small
                 (B, in) x (in, N*units) network, and their change is added back:
                 the dense forward's arithmetic restricted to the path (M/N times
                 fewer FLOPs; 29 -> 47 tournaments/s, transfer_throughput). Told
                 that the optimizer is plain SGD (`sgd_rate`), linear modules take
                 `transfer.serial_sgd`: the same SGD with layer 0's weight updates
                 applied per block of 5 minibatches through the block's Gram matrix
                 (exact up to rounding; 71 -> 87 tournaments/s). A stateful
                 optimizer (Adam, RMSProp: their moments move modules off the path
                 too) takes the dense forward.
  "synchronous": `lax.scan` over the T steps, `vmap` over the 2K paths: at step t
                 each path takes the gradient of its own minibatch at the SAME bank,
                 and the bank applies the SUM of the 2K gradients (each path's
                 gradient is zero off its modules). This is 2K parallel workers in
                 lockstep - the paper's asynchronous workers with zero staleness -
                 so a module shared by k paths gets k gradient contributions per step
                 and the bank takes T (not 2K x T) sequential steps per round. The
                 2K paths' minibatches are the leading axis of the batch, which
                 `shared.train_loop.fit` shards over the mesh's `data` axis: the
                 population is spread over devices and XLA all-reduces the summed
                 gradient. On a CPU it is slower than "serial": its dense forward
                 does M/N = 3.3x the path's arithmetic per tournament, and the
                 second core, which only its big GEMMs use, gives back ~1.5x
                 (measured by pinning to one core) and less when another process
                 holds that core.
Generation counts from "synchronous" with K > 1 therefore measure a different (more
parallel) algorithm than the paper's serial one; use K = 1, "serial" to compare with
the published numbers, and report the schedule with every number. Because gradients
are summed, a module on k of the 2K paths takes a k-times larger step: with SGD at
0.05 (fine serially) a synchronous K = 8 run diverged to a NaN loss in a fine-tuning
phase here; scale the learning rate down with K.

Tournament variant (`keep_winners`, `GAConfig.tournament = "winner_keeps"`), as
in jsikyoon/pathnet (its README: the two candidates use the same minibatches and
"winner parameters are updated to model"): both members of a tournament start
from the SAME bank and train on the SAME T minibatches; the bank then keeps the
WINNER's trained copy and the loser's updates are discarded, so a losing path
never changes a shared module. The paper's text (section 2.2) describes the
other form: both paths train the shared parameters in turn and every update
stays ("paper", the default). Compute per generation is the same (two paths x
T minibatches); the bank advances T steps per tournament, not 2T. Measured
(seed-7 pilots, 100-pair run): transfer/README.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from shared.errors import ConfigError
from transfer import bank_updates, pathnet, serial_sgd


def _check_plain_sgd(optimizer, rate: float) -> None:
    """Raises unless `optimizer` is stateless and maps a gradient g to -rate * g."""
    probe = {"w": jnp.array([1.0, -3.0, 1e6], jnp.float32)}
    state = optimizer.init(probe)
    updates, _ = optimizer.update(probe, state, probe)
    want = -rate * probe["w"]
    if jax.tree.leaves(state) or not bool(jnp.allclose(updates["w"], want)):
        raise ConfigError(
            f"sgd_rate={rate} is only for optax.sgd({rate}) (plain SGD); pass "
            "sgd_rate=None for other optimizers."
        )


def keep_winners(train):
    """A serial trainer whose tournaments keep only the winner's updates.

    Args:
      train: a trainer `(params, opt_state, frozen, paths (S, L, N), images
        (S, T, B, ...), labels (S, T, B)) -> (params, opt_state, fitness (S,),
        loss (S,))`, e.g. `make_trainers(...)["serial"]`.

    Returns:
      A trainer with the same signature. Slots (2k, 2k + 1) are tournament k:
      each member is trained by `train` alone from the bank (and optimizer
      state) left by tournament k - 1, on its own slot's minibatches (the GA
      round hands both the same ones); the bank continues from the member with
      the higher fitness (ties: the first, as `genetic.select`).
    """

    def run(params, opt_state, frozen, paths, images, labels):
        pairs = jax.tree.map(
            lambda a: a.reshape(-1, 2, 1, *a.shape[1:]), (paths, images, labels)
        )

        def one_tournament(carry, pair):
            def one_member(member):
                return train(*carry, frozen, *member)

            # lax.map: one trace of `train`; both members start from `carry`.
            new_params, new_opt, fitness, loss = jax.lax.map(one_member, pair)
            winner = jnp.where(fitness[0, 0] >= fitness[1, 0], 0, 1)
            kept = jax.tree.map(lambda a: a[winner], (new_params, new_opt))
            return kept, (fitness[:, 0], loss[:, 0])

        (params, opt_state), (fitness, loss) = jax.lax.scan(
            one_tournament, (params, opt_state), pairs
        )
        return params, opt_state, fitness.reshape(-1), loss.reshape(-1)

    return run


def make_loss(spec: pathnet.PathNetSpec):
    """`(params, path, images uint8 (B, ...), labels (B,)) -> (loss, accuracy)`."""

    def loss_fn(params, path, images, labels):
        x = images.astype(jnp.float32) / 255.0
        logits = pathnet.apply(params, path, x, spec)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    return loss_fn


def make_trainers(spec: pathnet.PathNetSpec, optimizer, sgd_rate: float | None = None):
    """The two ways to train S paths for T minibatches on the shared bank.

    Both map `(params, opt_state, frozen, paths (S, L, N), images (S, T, B, ...),
    labels (S, T, B))` to `(params, opt_state, fitness (S,), loss (S,))`, fitness
    being the mean pre-update training accuracy over the path's T minibatches.

    Args:
      spec: the network.
      optimizer: an optax transformation.
      sgd_rate: set it to r when `optimizer` is `optax.sgd(r)` (plain SGD); the
        serial schedule of linear modules then defers layer 0's updates over
        blocks of minibatches (`transfer.serial_sgd`: the same SGD; the GA round
        71 -> 87 tournaments/s, `benchmarks/transfer_throughput.py`).
        Checked against `optimizer` once, here.
    """
    use_blocked = sgd_rate is not None and spec.module == "linear"
    if sgd_rate is not None:
        _check_plain_sgd(optimizer, sgd_rate)
    blocked = serial_sgd.make_serial_sgd(spec, sgd_rate) if use_blocked else None
    loss_fn = make_loss(spec)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(params, opt_state, frozen, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        updates = bank_updates.mask_updates(updates, frozen)
        return optax.apply_updates(params, updates), opt_state

    def gathered_loss(sub, keep, images, labels):
        logits = bank_updates.apply_path(
            sub, keep, images.astype(jnp.float32) / 255.0, spec
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    gathered_grad = jax.value_and_grad(gathered_loss, has_aux=True)

    def serial_gathered(params, frozen, paths, images, labels):
        """Serial schedule for a stateless optimizer (SGD): each path trains a
        gathered copy of its own modules (`bank_updates.gather_path`) for T steps and
        writes the change back. Same arithmetic as the dense forward restricted
        to the path; modules off the path are untouched either way."""

        def one_path(params, inputs):
            path, path_images, path_labels = inputs
            keep, trainable, start = bank_updates.start_path(
                params["layers"], frozen, path, spec.units
            )
            masks = {
                "layers": tuple({"w": row, "b": row} for row in trainable),
                "head": jax.tree.map(lambda _: True, params["head"]),
            }

            def one_step(sub, batch):
                (loss, acc), grads = gathered_grad(sub, keep, *batch)
                updates, _ = optimizer.update(grads, optimizer.init(sub), sub)
                updates = jax.tree.map(
                    lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, masks
                )
                return optax.apply_updates(sub, updates), (loss, acc)

            sub, (loss, acc) = jax.lax.scan(
                one_step,
                {"layers": start, "head": params["head"]},
                (path_images, path_labels),
            )
            layers = bank_updates.scatter_path(
                params["layers"], path, sub["layers"], start
            )
            return {"layers": layers, "head": sub["head"]}, (acc.mean(), loss.mean())

        return jax.lax.scan(one_path, params, (paths, images, labels))

    def serial(params, opt_state, frozen, paths, images, labels):
        if not jax.tree.leaves(opt_state):
            fast = blocked or serial_gathered
            params, (fitness, loss) = fast(params, frozen, paths, images, labels)
            return params, opt_state, fitness, loss

        def one_path(carry, inputs):
            path, path_images, path_labels = inputs

            def one_step(carry, batch):
                params, opt_state = carry
                (loss, acc), grads = grad_fn(params, path, *batch)
                return update(params, opt_state, frozen, grads), (loss, acc)

            carry, (loss, acc) = jax.lax.scan(
                one_step, carry, (path_images, path_labels)
            )
            return carry, (acc.mean(), loss.mean())

        (params, opt_state), (fitness, loss) = jax.lax.scan(
            one_path, (params, opt_state), (paths, images, labels)
        )
        return params, opt_state, fitness, loss

    def summed_loss(params, paths, images, labels):
        loss, acc = jax.vmap(loss_fn, in_axes=(None, 0, 0, 0))(
            params, paths, images, labels
        )
        return loss.sum(), (loss, acc)

    # Gradient of the summed loss, not a vmapped gradient then a sum: the latter
    # materialises S per-path copies of the bank's gradient (16x slower measured).
    summed_grad = jax.grad(summed_loss, has_aux=True)

    def synchronous(params, opt_state, frozen, paths, images, labels):
        def one_step(carry, batch):
            params, opt_state = carry
            grads, (loss, acc) = summed_grad(params, paths, *batch)
            return update(params, opt_state, frozen, grads), (loss, acc)

        time_major = (jnp.swapaxes(images, 0, 1), jnp.swapaxes(labels, 0, 1))
        (params, opt_state), (loss, acc) = jax.lax.scan(
            one_step, (params, opt_state), time_major
        )
        return params, opt_state, acc.mean(axis=0), loss.mean(axis=0)

    return {"serial": serial, "synchronous": synchronous}
