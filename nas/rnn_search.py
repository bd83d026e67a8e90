"""The ENAS search phase for the RNN-cell space, and deriving the cell.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Sections 2.1-2.2 and 3.1. `make_search_step` trains the
shared weights by truncated BPTT on one sampled child per window (the state is
carried across windows, as the official code does even when the child changes)
and every `controller_every` windows takes one REINFORCE step whose
`num_aggregate` children are each scored on a random validation window from a
zero state (official `valid_rl`: log-perplexity clipped at 10, reward
c / perplexity). With the state's `random` flag set, children are uniform and
the controller never moves: the random-search control, same compiled step.

`derive` scores K children on the validation windows with the shared weights
and keeps the lowest perplexity. That is the *search* perplexity: a
shared-weight estimate, never the final one.

| point            | paper             | official code           | here             |
|------------------|-------------------|-------------------------|------------------|
| child optimizer  | SGD lr 20, clip   | SGD lr 0.25, clip 10,   | official (paper  |
|                  | 0.25, decay 0.96  | decay 0.95 from epoch   | preset); quick:  |
|                  | from epoch 15     | 12, l2 1e-7             | lr 2, clip 0.25  |
| controller steps | after each child  | 100 steps x 10 children | 1 step every     |
|                  | epoch             | after each epoch        | `controller_every`|
|                  |                   |                         | windows          |
| reward           | c / valid ppl     | c / ppl of one random   | the same, ppl    |
|                  |                   | valid window, log-ppl   | per child        |
|                  |                   | clipped at 10, c = 80   |                  |
| cell batch norm  | not mentioned     | moving averages when    | batch statistics |
|                  |                   | evaluating              | (`nas.rnn_cell`) |
"""

from __future__ import annotations

import functools
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas import reinforce, rnn_cell, rnn_lm
from nas import rnn_controller as ctrl_lib
from nas import search_space as space_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib

CONTROLLER_METRICS = ("loss", "reward", "valid_ppl", "baseline", "entropy", "log_prob")


@flax.struct.dataclass
class LMState:
    params: dict
    opt_state: optax.OptState
    hidden: jax.Array  # (B, H) carried across BPTT windows, no gradient
    step: jax.Array
    controller: reinforce.ControllerState | None = None
    controller_metrics: dict | None = None
    random: jax.Array | None = None  # () bool: uniform children, no controller


class Windows:
    """BPTT windows (W, B, T) of one split, in order, forever; resumable."""

    def __init__(self, x, y):
        self.x, self.y, self.position = x, y, 0

    def __next__(self):
        index = self.position % len(self.x)
        self.position += 1
        return {"x": self.x[index], "y": self.y[index]}

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = int(state["position"])


def child_optimizer(config, prefix, steps_per_epoch):
    """The official child SGD: l2 in the loss, global-norm clip, staircase decay."""
    c = lambda name: config[prefix + name]

    def schedule(step):
        start = c("lr_decay_start") * steps_per_epoch
        drops = jnp.floor(jnp.maximum(step - start, 0) / steps_per_epoch)
        return jnp.maximum(c("lr") * c("lr_decay") ** drops, c("lr_min"))

    return optax.chain(
        optax.add_decayed_weights(2 * c("l2")),
        optax.clip_by_global_norm(c("grad_clip")),
        optax.sgd(schedule),
    )


def supernet_cell(arch):
    """The cell function for `child_view(params, arch)`."""
    return lambda cell, *args: rnn_cell.selected_step(cell, arch, *args)


def child_view(params, arch):
    """LM params with the child's cell matrices gathered once (differentiable)."""
    return {
        "embedding": params["embedding"],
        "cell": rnn_cell.select(params["cell"], arch),
    }


@jax.jit
def _shared_xent(params, arch, x, y):
    return rnn_lm.evaluate(supernet_cell(arch), child_view(params, arch), x, y)


def shared_ppl(params, arch, windows) -> float:
    """Validation perplexity of child `arch` on the shared weights."""
    return float(np.exp(_shared_xent(params, jnp.asarray(arch), *windows)))


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _sample(params, config, key, num, random):
    if random:
        keys = jax.random.split(key, num)
        return jax.vmap(lambda k: space_lib.random_arch(k, config.space))(keys)
    return ctrl_lib.sample(params, config, key, num).arch


def make_search_step(config, lm, ctrl_config, child_opt, ctrl_opt):
    """`(state, batch, key, valid) -> (state, metrics)` for both search modes."""

    def perplexity_fn(child, archs, key, valid):
        starts = jax.random.randint(key, (len(archs),), 0, valid["x"].shape[0])

        def one(args):
            arch, start = args
            x, y = valid["x"][start], valid["y"][start]
            view, h0 = child_view(child, arch), jnp.zeros((x.shape[0], lm.hidden))
            hs, _ = rnn_lm.unroll(supernet_cell(arch), view, x, h0)
            return jnp.exp(jnp.minimum(rnn_lm.token_xent(view, hs, y).mean(), 10.0))

        return jax.lax.map(one, (archs, starts))

    def step(state: LMState, batch, key, valid):
        key_uniform, key_policy, key_drop, key_ctrl, key_valid = jax.random.split(
            key, 5
        )
        policy = ctrl_lib.rollout(state.controller.params, ctrl_config, key_policy)
        uniform = space_lib.random_arch(key_uniform, ctrl_config.space)
        arch = jnp.where(state.random, uniform, policy.arch)

        def loss_fn(params):
            view = child_view(params, arch)
            cell = supernet_cell(arch)
            return rnn_lm.loss(cell, view, lm, batch, state.hidden, key_drop)

        (_, (xent, hidden)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = child_opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def update(controller):
            return ctrl_lib.update(
                controller,
                key_ctrl,
                ctrl_config,
                ctrl_opt,
                lambda archs: perplexity_fn(params, archs, key_valid, valid),
                num_samples=config.num_aggregate,
                reward_constant=config.reward_constant,
                entropy_weight=config.entropy_weight,
                baseline_decay=config.baseline_decay,
            )

        due = ((state.step + 1) % config.controller_every == 0) & ~state.random
        keep = state.controller_metrics
        controller, ctrl_metrics = jax.lax.cond(
            due, update, lambda c: (c, keep), state.controller
        )
        new_state = state.replace(
            params=params,
            opt_state=opt_state,
            hidden=hidden,
            step=state.step + 1,
            controller=controller,
            controller_metrics=ctrl_metrics,
        )
        metrics = {"train/xent": xent, "train/ppl": jnp.exp(xent), **ctrl_metrics}
        return new_state, metrics

    return step


def search(config, workdir, streams, lm, ctrl_config, step, mode):
    """Runs (or resumes) the search phase; returns (state, FitResult)."""
    key_child, key_ctrl, key_run, key_eval = jax.random.split(
        jax.random.key(config.seed), 4
    )
    # jitted: one compile, not one per eager `uniform` shape
    params = jax.jit(rnn_lm.init, static_argnums=1)(key_child, lm)
    ctrl_params = jax.jit(ctrl_lib.init, static_argnums=1)(key_ctrl, ctrl_config)
    ctrl_opt = reinforce.make_optimizer(config.controller_lr)
    train = Windows(*rnn_lm.windows(streams["train"], config.batch_size, config.bptt))
    spe = len(train.x)
    state = LMState(
        params=params,
        opt_state=child_optimizer(config, "", spe).init(params),
        hidden=jnp.zeros((config.batch_size, lm.hidden), jnp.float32),
        step=jnp.zeros((), jnp.int32),
        controller=reinforce.ControllerState(
            ctrl_params, ctrl_opt.init(ctrl_params), jnp.zeros((), jnp.float32)
        ),
        controller_metrics={
            f"controller/{n}": jnp.zeros((), jnp.float32) for n in CONTROLLER_METRICS
        },
        random=jnp.asarray(mode == "random"),
    )
    valid = rnn_lm.windows(streams["valid"], config.valid_batch_size, config.bptt)
    evals = rnn_lm.windows(streams["valid"], config.eval_batch_size, config.bptt)
    space = ctrl_config.space

    def eval_fn(s):
        key = jax.random.fold_in(key_eval, int(s.step))
        archs = np.asarray(
            _sample(
                s.controller.params,
                ctrl_config,
                key,
                config.op_share_samples,
                mode == "random",
            )
        )
        ppls = [shared_ppl(s.params, a, evals) for a in archs[: config.eval_archs]]
        share = space_lib.op_share(space, archs)
        return {"search_valid_ppl": float(np.mean(ppls)), **share}

    result = train_loop.fit(
        step,
        state,
        workdir=workdir,
        num_steps=config.search_epochs * spe,
        key=key_run,
        batches=train,
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=spe,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
        constants={"x": valid[0], "y": valid[1]},
    )
    return result.state, result


def derive(config, workdir, state, ctrl_config, streams, mode) -> dict:
    """K children scored with the shared weights; the best is the derived cell."""
    path = os.path.join(workdir, "derive.json")
    if os.path.exists(path):  # a finished derive is not redone on resume
        return workdir_lib.read_json(workdir, "derive.json")
    key = jax.random.fold_in(jax.random.key(config.seed), 17)
    archs = np.asarray(
        _sample(
            state.controller.params,
            ctrl_config,
            key,
            config.derive_samples,
            mode == "random",
        )
    )
    evals = rnn_lm.windows(streams["valid"], config.eval_batch_size, config.bptt)
    ppls = [shared_ppl(state.params, arch, evals) for arch in archs]
    best = int(np.argmin(ppls))
    space = ctrl_config.space
    derived = {
        "candidates": [space_lib.to_fixed_arc(space, a) for a in archs],
        "candidate_valid_ppls": ppls,
        "fixed_arc": space_lib.to_fixed_arc(space, archs[best]),
        "search_valid_ppl": ppls[best],
    }
    workdir_lib.write_json(workdir, "derive.json", derived)
    return derived
