"""The ENAS search phase: child steps on shared weights alternating with REINFORCE.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.2 ("training the shared parameters w" and "training
the controller parameters theta", alternated): each step trains the supernet on
one sampled child with the official child recipe (Nesterov momentum, cosine
restarts, l2, gradient clipping); every `controller_every` steps one REINFORCE
update scores `num_aggregate` children, each on its own validation minibatch.
With `mode="random"` children are drawn uniformly and the controller is never
trained: the random-search control at the same child-step budget. The mode is a
flag in the state, not in the graph, so one compiled step serves both searches
(in random mode the `controller/*` metrics stay 0).

Once per epoch `eval_fn` records the op share of sampled children (the collapse
diagnostic) and their mean shared-weight validation accuracy.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas import controller as controller_lib
from nas import derive as derive_lib
from nas import networks, reinforce
from nas import search_space as space_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared.batches import BatchIterator

CONTROLLER_METRICS = (
    "loss",
    "reward",
    "valid_accuracy",
    "baseline",
    "entropy",
    "log_prob",
    "skip_rate",
)


@flax.struct.dataclass
class SearchState:
    child: dict
    child_opt: optax.OptState
    controller: reinforce.ControllerState
    controller_metrics: dict
    random: jax.Array  # () bool: uniform children, no controller updates
    step: jax.Array


class SearchBatches:
    """A train batch and the controller's validation batches, both resumable."""

    def __init__(self, train: BatchIterator, valid: BatchIterator):
        self.train, self.valid = train, valid

    def __next__(self):
        batch, valid = next(self.train), next(self.valid)
        batch.update(valid_image=valid["image"], valid_label=valid["label"])
        return batch

    def get_state(self):
        return {"train": self.train.get_state(), "valid": self.valid.get_state()}

    def set_state(self, state):
        self.train.set_state(state["train"])
        self.valid.set_state(state["valid"])


def cosine_restarts(lr_max, lr_min, t0, t_mul, steps_per_epoch):
    """SGDR (Loshchilov & Hutter 2017) in epochs, as the official child lr."""

    def schedule(step):
        epoch = step / steps_per_epoch
        if t_mul == 1:
            cycle = jnp.floor(epoch / t0)
            start, length = cycle * t0, t0
        else:
            cycle = jnp.floor(jnp.log(epoch / t0 * (t_mul - 1) + 1) / np.log(t_mul))
            start = t0 * (t_mul**cycle - 1) / (t_mul - 1)
            length = t0 * t_mul**cycle
        phase = (epoch - start) / length
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + jnp.cos(np.pi * phase))

    return schedule


def child_optimizer(config, lr_max, lr_min, steps_per_epoch):
    """l2 (official: l2 * sum w^2 in the loss), clip 5, Nesterov momentum 0.9."""
    schedule = cosine_restarts(
        lr_max, lr_min, config.lr_t0, config.lr_t_mul, steps_per_epoch
    )
    return optax.chain(
        optax.add_decayed_weights(2 * config.l2),
        optax.clip_by_global_norm(config.grad_clip),
        optax.sgd(schedule, momentum=0.9, nesterov=True),
    )


def steps_per_epoch(config, data) -> int:
    return len(data["train_y"]) // config.batch_size


def xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_search_step(net_config, ctrl_config, config, child_opt, ctrl_opt, preprocess):
    """The pure search step `(SearchState, batch, key) -> (state, metrics)`."""
    space = net_config.space

    def accuracy(child, arch, images, labels):
        logits = networks.apply(child, net_config, arch, preprocess(images))
        return (logits.argmax(-1) == labels).mean()

    def train_child(state, batch, key_arch, key_aug):
        key_uniform, key_policy = jax.random.split(key_arch)
        policy = controller_lib.rollout(
            state.controller.params, ctrl_config, key_policy
        )
        uniform = space_lib.random_arch(key_uniform, space)
        arch = jnp.where(state.random, uniform, policy.arch)
        images = preprocess(batch["image"], key_aug)

        def loss_fn(child):
            logits = networks.apply(child, net_config, arch, images)
            hits = logits.argmax(-1) == batch["label"]
            return xent(logits, batch["label"]), hits.mean()

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.child)
        updates, child_opt_state = child_opt.update(grads, state.child_opt, state.child)
        return optax.apply_updates(state.child, updates), child_opt_state, loss, acc

    def train_controller(state, child, batch, key_ctrl):
        num = config.num_aggregate
        valid_x = batch["valid_image"].reshape(
            (num, -1) + batch["valid_image"].shape[1:]
        )
        valid_y = batch["valid_label"].reshape(num, -1)

        def reward_fn(archs):
            return jax.lax.map(
                lambda a: accuracy(child, a[0], a[1], a[2]), (archs, valid_x, valid_y)
            )

        def update(controller):
            return reinforce.update(
                controller,
                key_ctrl,
                ctrl_config,
                ctrl_opt,
                reward_fn,
                num_samples=num,
                entropy_weight=config.entropy_weight,
                baseline_decay=config.baseline_decay,
                skip_weight=config.skip_weight,
            )

        due = ((state.step + 1) % config.controller_every == 0) & ~state.random
        keep = state.controller_metrics
        return jax.lax.cond(due, update, lambda c: (c, keep), state.controller)

    def step(state: SearchState, batch, key):
        key_arch, key_aug, key_ctrl = jax.random.split(key, 3)
        child, child_opt_state, loss, acc = train_child(state, batch, key_arch, key_aug)
        controller, ctrl_metrics = train_controller(state, child, batch, key_ctrl)
        new_state = state.replace(
            child=child,
            child_opt=child_opt_state,
            controller=controller,
            controller_metrics=ctrl_metrics,
            step=state.step + 1,
        )
        return new_state, {"train/loss": loss, "train/accuracy": acc, **ctrl_metrics}

    return step


def search(config, workdir, data, net_config, ctrl_config, preprocess, step, mode):
    """Runs (or resumes) the search phase with `step` from `make_search_step`.

    Returns:
      (state, FitResult, shared_eval): the final `SearchState`, fit's result and
      `shared_eval(child, arch) -> accuracy` on the validation examples.
    """
    key_child, key_ctrl, key_run, key_eval = jax.random.split(
        jax.random.key(config.seed), 4
    )
    child = networks.init(key_child, net_config)
    ctrl_params = controller_lib.init(key_ctrl, ctrl_config)
    ctrl_opt = reinforce.make_optimizer(config.controller_lr)
    controller = reinforce.ControllerState(
        ctrl_params, ctrl_opt.init(ctrl_params), jnp.zeros((), jnp.float32)
    )
    spe = steps_per_epoch(config, data)
    child_opt = child_optimizer(config, config.lr_max, config.lr_min, spe)
    metrics = {
        f"controller/{name}": jnp.zeros((), jnp.float32) for name in CONTROLLER_METRICS
    }
    state = SearchState(
        child,
        child_opt.init(child),
        controller,
        metrics,
        jnp.asarray(mode == "random"),
        jnp.zeros((), jnp.int32),
    )
    train = BatchIterator(
        {"image": data["train_x"], "label": data["train_y"]},
        config.batch_size,
        config.seed,
    )
    valid = BatchIterator(
        {"image": data["valid_x"], "label": data["valid_y"]},
        config.num_aggregate * config.valid_batch_size,
        config.seed + 1,
    )
    count = config.eval_examples
    valid_x = np.asarray(preprocess(data["valid_x"][:count]))
    shared_eval = derive_lib.make_shared_eval(
        net_config, valid_x, data["valid_y"][:count], config.eval_batch_size
    )

    def eval_fn(s):
        key = jax.random.fold_in(key_eval, int(s.step))
        archs = derive_lib.sample_archs(
            s.controller.params, ctrl_config, key, config.op_share_samples, mode
        )
        accs = [shared_eval(s.child, a) for a in archs[: config.eval_archs]]
        share = space_lib.op_share(net_config.space, archs)
        return {
            "search_valid_accuracy": float(np.mean(accs)),
            **{f"eval/{k}": v for k, v in share.items()},
        }

    result = train_loop.fit(
        step,
        state,
        workdir=workdir,
        num_steps=config.search_epochs * spe,
        key=key_run,
        batches=SearchBatches(train, valid),
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=spe,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    return result.state, result, shared_eval
