"""The ENAS recurrent cell: a shared-weight supernet over the RNN-cell space.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.1 and the official `ptb_enas_child.py`
(github.com/melodyguan/enas). A cell of N nodes reads the embedded word x_t and
the previous state h_{t-1}:

    node 0:  [h; c] = [x_t * m_x, h_{t-1} * m_h] W_prev        (2H -> 2H)
             s_0 = h_{t-1} + sigmoid(c) * (f_0(h) - h_{t-1})     (highway)
    node i:  [h; c] = (s_{p_i} * m_h) W_{i, p_i}                 (H -> 2H)
             s_i = s_{p_i} + sigmoid(c) * (f_i(h) - s_{p_i})
    h_t = mean of the loose ends (nodes no later node reads)

with `p_i < i` and `f_i` in (tanh, relu, identity, sigmoid) taken from the arch
(`nas.search_space.rnn_space` layout). m_x, m_h are variational dropout masks
(one per sequence, Gal & Ghahramani 2016).

The supernet holds one W_{i,j} for every pair j < i (N(N-1)/2 matrices) and
`supernet_step(params, arch, ...)` takes the arch as data, so one compiled
function serves every child (in training, `select` gathers the child's
matrices once per window and `selected_step` runs the time steps).
`extract(params, arch)` cuts out, on the host, the N-1 matrices a child
uses; `standalone_step(params, arch, ...)` runs that child with the arch fixed
at trace time (static gathers, no switch): the network that is retrained from
scratch. The two give equal outputs on equal weights (tests).

Where the paper and the official code differ, and what is followed here:

| point        | paper            | official code             | here              |
|--------------|------------------|---------------------------|-------------------|
| node weights | one W per (i, j) | one per (i, j, f_i);      | paper             |
|              |                  | W_prev per f_0            |                   |
| batch norm   | not mentioned    | search only: every node's | official; batch   |
|              |                  | pre-activation and h_t,   | statistics also   |
|              |                  | eps 1, moving averages    | when evaluating   |
|              |                  | when evaluating           | (opt-in, `bn_*`)  |
| init         | not stated       | uniform +-0.1 (H <= 300), | official          |
|              |                  | 0.05 (<= 400), else 0.04  |                   |
| h_t          | mean of the      | the same                  | the same          |
|              | loose ends       |                           |                   |

Why search-time batch norm is not optional (measured on PTB, `ptb_search:quick`
without it, hidden 64, SGD lr 2, global-norm clip 0.25): train perplexity falls
for 28 steps, then is inf at step 29. The weights stay small (max |w| 0.15),
but the clipped updates (norm <= 0.5 each) land on the few matrices of each
sampled child, and the spectral norm of W_prev's h -> h block grows from 0.90
at init to 2.91. A child with relu/identity nodes that these updates did not
train then has a recurrent gain above 1: with the step-28 weights and the
step-29 child, ||h_t|| grows 1.35x per time step, from 4 to 1e5 over one
35-step window (0.81, flat, with the init weights). Clipping bounds the update,
not the state. It is a weight-sharing failure: the same child trained alone
(no batch norm, same lr and clip, 285 steps) stays finite (train perplexity
800) although its W_prev block reaches spectral norm 3.71, because its gates
are trained with it. Normalising every node and h_t over the batch (official
`ptb_ops.batch_norm`) bounds the state for every child: the search run is
finite and reaches train perplexity ~760 in 285 steps. The retrained child
has no batch norm, as in the official final model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nas import search_space as space_lib
from shared import draws

ACTIVATIONS = (jnp.tanh, jax.nn.relu, lambda h: h, jax.nn.sigmoid)
assert len(ACTIVATIONS) == len(space_lib.RNN_ACTIVATIONS)


def num_pairs(num_nodes: int) -> int:
    return num_nodes * (num_nodes - 1) // 2


def pair_index(node, prev):
    """Row of W_{node, prev} (1 <= node, prev < node) in the packed supernet."""
    return node * (node - 1) // 2 + prev


def init_range(hidden: int) -> float:
    """The official uniform init range, by hidden size."""
    return 0.1 if hidden <= 300 else 0.05 if hidden <= 400 else 0.04


def uniform_init(key: jax.Array, shape: tuple[int, ...], hidden: int) -> jax.Array:
    """U(-r, r) float32 with r = `init_range(hidden)`, drawn flat (`shared.draws`)."""
    limit = init_range(hidden)
    return draws.flat(jax.random.uniform, key, shape, minval=-limit, maxval=limit)


def init(
    key: jax.Array,
    num_nodes: int,
    hidden: int,
    standalone: bool = False,
    batch_norm: bool = False,
):
    """Cell weights, uniform in +-`init_range(hidden)`.

    Returns:
      {"w_prev": (2H, 2H), "w_nodes": (P, H, 2H)} with P = N(N-1)/2 pairs for
      the supernet or P = N - 1 (one per node) for a standalone child; with
      `batch_norm`, also "bn_scale" (N, 2H) / "bn_offset" (N, 2H) for the node
      pre-activations and "bn_out" (2, H) (scale, offset) for the output.
    """
    count = num_nodes - 1 if standalone else num_pairs(num_nodes)
    key_prev, key_nodes = jax.random.split(key)
    params = {
        "w_prev": uniform_init(key_prev, (2 * hidden, 2 * hidden), hidden),
        "w_nodes": uniform_init(key_nodes, (count, hidden, 2 * hidden), hidden),
    }
    if batch_norm:
        params["bn_scale"] = jnp.ones((num_nodes, 2 * hidden), jnp.float32)
        params["bn_offset"] = jnp.zeros((num_nodes, 2 * hidden), jnp.float32)
        params["bn_out"] = jnp.stack([jnp.ones(hidden), jnp.zeros(hidden)])
    return params


def batch_norm(x, scale, offset, epsilon: float = 1.0):
    """Official `ptb_ops.batch_norm` in training mode: (B, D) over the batch."""
    mean, var = x.mean(0), x.var(0)
    return scale * (x - mean) / jnp.sqrt(epsilon + var) + offset


def _norm(child, node, pre):
    if "bn_scale" not in child:
        return pre
    return batch_norm(pre, child["bn_scale"][node], child["bn_offset"][node])


def split_arch(arch):
    """(f_0, prev (N-1,), funcs (N-1,)) from a flat rnn arch (2N - 1,)."""
    return arch[0], arch[1::2], arch[2::2]


def extract(params, arch) -> dict:
    """The standalone child's weights: W_{i, p_i} for i = 1..N-1."""
    _, prev, _ = split_arch(np.asarray(arch))
    rows = [pair_index(node, int(p)) for node, p in enumerate(prev, start=1)]
    return {"w_prev": params["w_prev"], "w_nodes": params["w_nodes"][np.array(rows)]}


def _highway(pre, base, activation):
    h, gate = jnp.split(pre, 2, axis=-1)
    return base + jax.nn.sigmoid(gate) * (activation(h) - base)


def _mask(value, mask):
    return value if mask is None else value * mask


def select(params, arch) -> dict:
    """The child's N-1 node matrices gathered by a traced arch: one gather per
    BPTT window, outside the time loop (a per-step gather would copy and
    scatter-add H x 2H matrices at every time step)."""
    _, prev, _ = split_arch(arch)
    rows = pair_index(jnp.arange(1, prev.shape[0] + 1), prev)
    bn = {k: v for k, v in params.items() if k.startswith("bn_")}
    return {"w_prev": params["w_prev"], "w_nodes": params["w_nodes"][rows], **bn}


def selected_step(child, arch, x, h_prev, x_mask=None, h_mask=None):
    """One time step of child `arch` (traced) on `select(params, arch)`.

    Args:
      child: `select(supernet_params, arch)`.
      arch: (2N - 1,) int32, the rnn_space layout.
      x: (B, H) embedded input; h_prev: (B, H) previous cell output.
      x_mask, h_mask: (B, H) dropout masks (already scaled by 1/keep) or None.

    Returns:
      (B, H) the new cell output h_t.
    """
    num_nodes = (arch.shape[0] + 1) // 2
    f_0, prev, funcs = split_arch(arch)
    apply = lambda f, h: jax.lax.switch(f, ACTIVATIONS, h)
    inputs = jnp.concatenate([_mask(x, x_mask), _mask(h_prev, h_mask)], -1)
    pre = _norm(child, 0, inputs @ child["w_prev"])
    nodes = [_highway(pre, h_prev, lambda h: apply(f_0, h))]
    for node in range(1, num_nodes):
        base = jnp.stack(nodes)[prev[node - 1]]
        pre = _norm(child, node, _mask(base, h_mask) @ child["w_nodes"][node - 1])
        nodes.append(_highway(pre, base, lambda h, n=node: apply(funcs[n - 1], h)))
    read = jax.nn.one_hot(prev, num_nodes, dtype=x.dtype).sum(0)
    loose = (read == 0).astype(x.dtype)  # the last node is always loose
    out = jnp.einsum("n,nbh->bh", loose, jnp.stack(nodes)) / loose.sum()
    if "bn_out" in child:
        out = batch_norm(out, child["bn_out"][0], child["bn_out"][1])
    return out


def supernet_step(params, arch, x, h_prev, x_mask=None, h_mask=None):
    """One time step of child `arch` (traced) on the shared weights `params`."""
    return selected_step(select(params, arch), arch, x, h_prev, x_mask, h_mask)


def standalone_step(params, arch, x, h_prev, x_mask=None, h_mask=None):
    """One time step of the fixed child `arch` (a host int array or tuple).

    Same maths as `supernet_step` on `extract(supernet_params, arch)`, with the
    wiring and activations fixed when traced.
    """
    f_0, prev, funcs = split_arch(np.asarray(arch))
    inputs = jnp.concatenate([_mask(x, x_mask), _mask(h_prev, h_mask)], -1)
    pre = inputs @ params["w_prev"]
    nodes = [_highway(pre, h_prev, ACTIVATIONS[int(f_0)])]
    for node, (p, f) in enumerate(zip(prev, funcs, strict=True), start=1):
        base = nodes[int(p)]
        pre = _mask(base, h_mask) @ params["w_nodes"][node - 1]
        nodes.append(_highway(pre, base, ACTIVATIONS[int(f)]))
    loose = [n for i, n in enumerate(nodes) if i not in set(int(p) for p in prev)]
    return sum(loose) / len(loose)
