"""Stand-alone retraining of a derived architecture, and the Kendall-tau control.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 3.2: the derived child is rebuilt as a fixed network
and trained from scratch (same optimizer family, longer schedule, cutout in
`paper`); its test accuracy is the *final* accuracy of Table 2.

`kendall` retrains a few of the derive candidates briefly and compares their
stand-alone validation accuracy with the shared-weight one (Yu et al. 2020,
arXiv:1902.08142): does the supernet rank children as training does?
"""

from __future__ import annotations

import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas import derive as derive_lib
from nas import diagnostics, networks
from nas import search as search_lib
from nas import search_space as space_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared.batches import BatchIterator, iterate_once


@flax.struct.dataclass
class ChildState:
    params: dict
    opt_state: optax.OptState
    arch: jax.Array  # (length,) int32; read by the "supernet" network only
    step: jax.Array


def _final_config(config, net_config):
    return networks.resized(
        net_config, config.final_width, config.get("final_num_layers")
    )


class Retrainer:
    """Trains architectures from scratch: `final` and the Kendall retrains.

    `config.final_network` picks the network: "standalone" builds each arch as
    a fixed network (fastest steps, one compile per arch); "supernet" runs the
    supernet at `final_width` with the arch as data (one compile serves every
    retrain; slower steps). Both compute the same function of the chosen ops'
    weights; in "supernet" the unused ops' weights only see the l2 decay, whose
    tiny term also enters the global-norm clipping.
    """

    def __init__(self, config, net_config, preprocess, steps_per_epoch):
        self.config, self.preprocess, self.spe = config, preprocess, steps_per_epoch
        self.net = _final_config(config, net_config)
        self.opt = search_lib.child_optimizer(
            config, config.final_lr_max, config.final_lr_min, steps_per_epoch
        )
        if config.final_network == "supernet":
            self._shared_step = self._make_step(None)

    def _logits(self, params, arch, x):
        if isinstance(arch, np.ndarray):  # a fixed network: static control flow
            return networks.apply_standalone(params, self.net, arch, x)
        return networks.apply(params, self.net, arch, x)

    def _make_step(self, arch):
        def step(state, batch, key):
            images = self.preprocess(batch["image"], key)
            net_arch = state.arch if arch is None else arch

            def loss_fn(p):
                logits = self._logits(p, net_arch, images)
                hits = logits.argmax(-1) == batch["label"]
                return search_lib.xent(logits, batch["label"]), hits.mean()

            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
            (loss, acc), grads = grad_fn(state.params)
            updates, opt_state = self.opt.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            new_state = state.replace(params=params, opt_state=opt_state)
            new_state = new_state.replace(step=state.step + 1)
            return new_state, {"train/loss": loss, "train/accuracy": acc}

        return step

    def train(self, workdir, arch, data, epochs, split):
        """Trains `arch` from scratch; returns (`split` accuracy, #params)."""
        config = self.config
        arch = space_lib.validate(self.net.space, arch)
        key_init, key_run = jax.random.split(
            jax.random.fold_in(jax.random.key(config.seed), 11)
        )
        params = networks.init(key_init, self.net)
        child_params = networks.derive(params, self.net, arch)
        if config.final_network == "supernet":
            step, traced = self._shared_step, jnp.asarray(arch)

            def hits(p, x, y):  # the search's compiled function when widths match
                return derive_lib.count_hits(p, self.net, traced, x, y)
        else:
            params = child_params
            step = self._make_step(arch)
            predict = jax.jit(lambda p, x: self._logits(p, arch, x).argmax(-1))

            def hits(p, x, y):
                return (predict(p, x) == y).sum()

        state = ChildState(
            params, self.opt.init(params), jnp.asarray(arch), jnp.zeros((), jnp.int32)
        )
        images = np.asarray(self.preprocess(data[f"{split}_x"]))
        labels = data[f"{split}_y"]

        def eval_fn(s):
            total = sum(
                int(hits(s.params, b["x"], b["y"]))
                for b in iterate_once(
                    {"x": images, "y": labels}, config.eval_batch_size
                )
            )
            return {f"{split}_accuracy": total / len(labels)}

        batches = BatchIterator(
            {"image": data["train_x"], "label": data["train_y"]},
            config.batch_size,
            config.seed + 2,
        )
        result = train_loop.fit(
            step,
            state,
            workdir=workdir,
            num_steps=epochs * self.spe,
            key=key_run,
            batches=batches,
            eval_fn=eval_fn,
            log_every=config.log_every,
            eval_every=config.final_eval_every,
            checkpoint_every=config.checkpoint_every,
            mesh=mesh_lib.make_mesh(config.num_devices),
        )
        accuracy = result.eval_metrics[f"eval/{split}_accuracy"]
        return accuracy, networks.num_params(child_params)


def kendall(config, workdir, derived, data, retrainer: Retrainer):
    """Tau between shared-weight and short stand-alone validation accuracy.

    Returns:
      (tau, shared, standalone): Kendall's tau-b and both accuracy lists over
      the first `kendall_archs` derive candidates.
    """
    count = config.kendall_archs
    archs = derived["candidates"][:count]
    shared = derived["candidate_valid_accuracies"][:count]
    standalone = [
        retrainer.train(
            os.path.join(workdir, f"arch_{i}"),
            arch,
            data,
            config.kendall_epochs,
            "valid",
        )[0]
        for i, arch in enumerate(archs)
    ]
    return diagnostics.kendall_tau(shared, standalone), shared, standalone
