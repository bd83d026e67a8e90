"""Deriving an architecture: sample K children, keep the best on validation.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.2 ("Deriving Architectures"): several models are
sampled from the trained policy, each is scored on one validation minibatch with
the shared weights, and only the best is retrained from scratch. Here each is
scored on the same `eval_examples` held-out images (less noisy than one
minibatch); the random-search control samples uniformly with the same K.
This accuracy is the *search* accuracy: a shared-weight estimate, never the
final one.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from nas import controller as controller_lib
from nas import networks, plot
from nas import search_space as space_lib
from shared import mesh as mesh_lib
from shared import workdir as workdir_lib
from shared.batches import iterate_once

SAMPLE_CHUNK = 32  # archs per compiled sampling call, whatever the caller's num


@functools.partial(jax.jit, static_argnums=1)
def _sample(params, ctrl_config, key, random):
    keys = jax.random.split(key, SAMPLE_CHUNK)
    uniform = jax.vmap(lambda k: space_lib.random_arch(k, ctrl_config.space))(keys)
    policy = controller_lib.sample(params, ctrl_config, key, SAMPLE_CHUNK).arch
    return jnp.where(random, uniform, policy)


def sample_archs(ctrl_params, ctrl_config, key, num: int, mode: str) -> np.ndarray:
    """(num, length) archs from the controller, or uniform when `mode="random"`.

    Drawn in fixed chunks with the mode as data, so one compiled function serves
    every caller (op shares, derive) in both modes.
    """
    random = jnp.asarray(mode == "random")
    chunks = [
        np.asarray(
            _sample(ctrl_params, ctrl_config, jax.random.fold_in(key, i), random)
        )
        for i in range(-(-num // SAMPLE_CHUNK))
    ]
    return np.concatenate(chunks)[:num]


@functools.partial(jax.jit, static_argnums=1)
def count_hits(params, net_config, arch, images, labels):
    """Correct predictions of supernet child `arch` on a normalized batch."""
    logits = networks.apply(params, net_config, arch, images)
    return (logits.argmax(-1) == labels).sum()


def make_shared_eval(net_config, images, labels, batch_size):
    """(child params, arch) -> shared-weight accuracy on normalized `images`."""

    def evaluate(child, arch):
        hits = sum(
            int(count_hits(child, net_config, arch, b["x"], b["y"]))
            for b in iterate_once({"x": images, "y": labels}, batch_size)
        )
        return hits / len(labels)

    return evaluate


def derive(config, workdir, state, net_config, ctrl_config, shared_eval, mode):
    """Best of K sampled archs on validation with the shared weights (cached).

    Writes `derive.json` (arch, fixed_arc, every candidate and its accuracy)
    and `derived.png`, and returns the same dict; a rerun reads the file back.
    """
    path = os.path.join(workdir, "derive.json")
    if os.path.exists(path):
        return workdir_lib.read_json(workdir, "derive.json")
    key = jax.random.fold_in(jax.random.key(config.seed), 7)
    # Under the search's mesh, as fit runs eval_fn: the same compiled functions.
    with jax.set_mesh(mesh_lib.make_mesh(config.num_devices)):
        archs = sample_archs(
            state.controller.params, ctrl_config, key, config.derive_samples, mode
        )
        accs = [shared_eval(state.child, a) for a in archs]
    best = int(np.argmax(accs))
    result = {
        "arch": archs[best].tolist(),
        "fixed_arc": space_lib.to_fixed_arc(net_config.space, archs[best]),
        "search_valid_accuracy": accs[best],
        "candidate_valid_accuracies": accs,
        "candidates": [a.tolist() for a in archs],
    }
    workdir_lib.write_json(workdir, "derive.json", result)
    plot.plot_arch(net_config.space, archs[best], os.path.join(workdir, "derived.png"))
    return result
