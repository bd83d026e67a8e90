"""ENAS recurrent-cell search on Penn Treebank -> derive -> retrain -> test ppl.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 3.1 and Table 1 (ENAS cell: 55.8 test perplexity).
Phases, each in its own sub-workdir so each resumes on its own:

  search/  truncated BPTT on the shared-weight supernet (`nas.rnn_cell`), one
           sampled child per window, the state carried across windows; every
           `controller_every` windows one REINFORCE step (`nas.rnn_controller`)
           scores `num_aggregate` children, each on a random validation
           window from a zero state, reward c / perplexity.
  derive/  `derive_samples` children scored with the shared weights on the
           validation windows; the lowest perplexity is the derived cell.
  final/   the derived cell as a standalone network (`rnn_cell.standalone_step`),
           trained from scratch; validation and test perplexity.

The *search* perplexity (shared weights, validation) and the *final* ones
(retrained, validation and test) are always reported apart. With
`random_search=True` the three phases run again under `random/` with uniform
children and no controller, at the same budget and the same K: the control.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nas import diagnostics, ptb, reinforce, rnn_cell, rnn_lm, rnn_plot
from nas import rnn_controller as ctrl_lib
from nas import rnn_search as search_lib
from nas import search_space as space_lib
from nas.rnn_search import LMState, Windows, child_optimizer
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.errors import ConfigError


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Area rules on top of shared/config.py; raises ConfigError naming the fix."""
    if config.space != "rnn":
        raise ConfigError(f"config.space={config.space!r}; nas.train_rnn needs 'rnn'")
    if config.corpus not in ("ptb", "synthetic"):
        raise ConfigError(
            f"config.corpus={config.corpus!r}; set it to 'ptb' (with "
            "--config.ptb_dir) or 'synthetic' (a generated tiny text)"
        )
    for prefix in ("", "final_"):
        for name in ("embed_keep", "input_keep", "hidden_keep"):
            value = config[prefix + name]
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"config.{prefix}{name}={value} must be in (0, 1]")
    if not 0.0 < config.baseline_decay < 1.0:
        raise ConfigError("config.baseline_decay must be in (0, 1)")
    if config.tau_archs == 1 or config.tau_archs > config.derive_samples:
        raise ConfigError(
            f"config.tau_archs={config.tau_archs}: use 0 (off) or 2..derive_samples"
            f" ({config.derive_samples})"
        )


def load_corpus(config, workdir):
    """({split: stream}, vocab, source) for `config.corpus`."""
    if config.corpus == "synthetic":
        text = ptb.write_synthetic_text(os.path.join(workdir, "text"), config.seed)
        streams, vocab, source = ptb.load(text, os.path.join(workdir, "tfds"))
        source = "synthetic (generated Markov text) " + source
    else:
        streams, vocab, source = ptb.load(config.ptb_dir, config.data_dir)
    for split in ("train", "valid"):
        if config[f"{split}_tokens"]:
            streams[split] = streams[split][: config[f"{split}_tokens"]]
    return streams, vocab, source


def lm_config(config, vocab_size, prefix=""):
    return rnn_lm.LMConfig(
        vocab_size=vocab_size,
        hidden=config[prefix + "hidden"],
        num_nodes=config.num_nodes,
        embed_keep=config[prefix + "embed_keep"],
        input_keep=config[prefix + "input_keep"],
        hidden_keep=config[prefix + "hidden_keep"],
        slowness=config[prefix + "slowness"],
        batch_norm=not prefix and config.batch_norm,
    )


def make_final_step(lm, arch, optimizer):
    """`(state, batch, key) -> (state, metrics)` for the standalone child."""
    arch = tuple(int(v) for v in arch)
    cell = lambda c, *args: rnn_cell.standalone_step(c, arch, *args)

    def step(state: LMState, batch, key):
        def loss_fn(params):
            return rnn_lm.loss(cell, params, lm, batch, state.hidden, key)

        (_, (xent, hidden)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            params=params, opt_state=opt_state, hidden=hidden, step=state.step + 1
        )
        return new_state, {"train/xent": xent, "train/ppl": jnp.exp(xent)}

    return step, cell


@functools.partial(jax.jit, static_argnums=0)
def _standalone_xent(arch: tuple, params, x, y):
    """Valid/test cross-entropy of the fixed child `arch`; cached per arch, so
    a resumed run or a second evaluation compiles nothing."""
    cell = lambda c, *args: rnn_cell.standalone_step(c, arch, *args)
    return rnn_lm.evaluate(cell, params, x, y)


def final(config, workdir, arch, streams, vocab_size) -> dict:
    """Retrains `arch` from scratch as a standalone cell; valid and test ppl."""
    lm = lm_config(config, vocab_size, "final_")
    train = Windows(
        *rnn_lm.windows(streams["train"], config.final_batch_size, config.bptt)
    )
    spe = len(train.x)
    optimizer = child_optimizer(config, "final_", spe)
    key_init, key_run = jax.random.split(
        jax.random.fold_in(jax.random.key(config.seed), 5)
    )
    params = rnn_lm.init(key_init, lm, standalone=True)
    state = LMState(
        params,
        optimizer.init(params),
        jnp.zeros((config.final_batch_size, lm.hidden), jnp.float32),
        jnp.zeros((), jnp.int32),
    )
    step, _ = make_final_step(lm, arch, optimizer)
    arch_key = tuple(int(v) for v in arch)
    evaluate = lambda p, x, y: _standalone_xent(arch_key, p, x, y)
    splits = {
        s: rnn_lm.windows(streams[s], config.eval_batch_size, config.bptt)
        for s in ("valid", "test")
    }

    def eval_fn(s):
        return {"final_valid_ppl": float(np.exp(evaluate(s.params, *splits["valid"])))}

    mesh = mesh_lib.make_mesh(config.num_devices)

    result = train_loop.fit(
        step,
        state,
        workdir=workdir,
        num_steps=config.final_epochs * spe,
        key=key_run,
        batches=train,
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=spe,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh,
    )
    params = result.state.params
    with jax.set_mesh(mesh):  # reuses eval_fn's compile (shared/train_loop.py)
        valid_xent = evaluate(params, *splits["valid"])
        test_xent = evaluate(params, *splits["test"])
    return {
        "final_valid_ppl": float(np.exp(valid_xent)),
        "final_test_ppl": float(np.exp(test_xent)),
        "final_test_tokens": int(splits["test"][0].size),
        "final_params": int(sum(v.size for v in jax.tree.leaves(params))),
        "final_train_steps_per_second": result.steps_per_second,
    }


def rank_agreement(config, workdir, space, streams, vocab_size) -> dict:
    """Kendall tau between the shared-weight valid perplexity of the first
    `config.tau_archs` derive candidates and their valid perplexity after a
    short standalone retrain (`config.tau_epochs`): does the supernet rank
    children as training them would (the question of Sciuto et al. 2020)?"""
    derived = workdir_lib.read_json(os.path.join(workdir, "derive"), "derive.json")
    count = min(config.tau_archs, len(derived["candidates"]))
    short = config.copy_and_resolve_references()
    short.final_epochs = config.tau_epochs
    shared = derived["candidate_valid_ppls"][:count]
    alone = []
    for i, text in enumerate(derived["candidates"][:count]):
        arch = space_lib.from_fixed_arc(space, text)
        tau_dir = os.path.join(workdir, "tau", str(i))
        alone.append(
            final(short, tau_dir, arch, streams, vocab_size)["final_valid_ppl"]
        )
    return {
        "tau/shared_valid_ppl": shared,
        "tau/standalone_valid_ppl": alone,
        "tau/kendall_tau": diagnostics.kendall_tau(shared, alone),
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """search -> derive -> final (and the random-search control); summary.json."""
    start = time.time()
    streams, vocab, source = load_corpus(config, workdir)
    space = space_lib.rnn_space(config.num_nodes)
    lm = lm_config(config, len(vocab))
    ctrl_config = ctrl_lib.RnnControllerConfig(
        space,
        lstm_size=config.lstm_size,
        tanh_constant=config.tanh_constant,
        temperature=config.temperature,
    )
    spe = len(rnn_lm.windows(streams["train"], config.batch_size, config.bptt)[0])
    step = search_lib.make_search_step(  # one step (one compile) for both modes
        config,
        lm,
        ctrl_config,
        child_optimizer(config, "", spe),
        reinforce.make_optimizer(config.controller_lr),
    )
    mesh = mesh_lib.make_mesh(config.num_devices)
    summary = {
        "data_source": source,
        "vocab_size": len(vocab),
        "tokens": {k: int(len(v)) for k, v in streams.items()},
        "device": jax.devices()[0].device_kind,
    }
    for mode in ["enas"] + (["random"] if config.random_search else []):
        root = workdir if mode == "enas" else os.path.join(workdir, "random")
        prefix = "" if mode == "enas" else "random_"
        t0 = time.time()
        state, result = search_lib.search(
            config, os.path.join(root, "search"), streams, lm, ctrl_config, step, mode
        )
        searched = time.time() - t0
        with jax.set_mesh(mesh):  # reuses the search evals' compiles
            derived = search_lib.derive(
                config, os.path.join(root, "derive"), state, ctrl_config, streams, mode
            )
        t0 = time.time()
        arch = space_lib.from_fixed_arc(space, derived["fixed_arc"])
        finals = final(config, os.path.join(root, "final"), arch, streams, len(vocab))
        summary.update({prefix + k: v for k, v in finals.items()})
        summary[prefix + "search_valid_ppl"] = derived["search_valid_ppl"]
        summary[prefix + "fixed_arc"] = derived["fixed_arc"]
        summary[prefix + "search_seconds_this_run"] = searched
        summary[prefix + "final_seconds_this_run"] = time.time() - t0
        if mode == "enas":
            summary["search_steps_per_second"] = result.steps_per_second
            summary.update(
                {
                    k.replace("eval/", ""): v
                    for k, v in result.eval_metrics.items()
                    if "op_share" in k
                }
            )
            with open(os.path.join(workdir, "derived_cell.txt"), "w") as f:
                f.write(derived["fixed_arc"] + "\n")
            rnn_plot.draw(arch, os.path.join(workdir, "derived_cell.png"))
    if config.tau_archs:
        summary.update(rank_agreement(config, workdir, space, streams, len(vocab)))
    summary["wall_seconds_this_run"] = time.time() - start
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
