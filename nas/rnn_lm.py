"""A word-level language model around an ENAS recurrent cell.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 3.1 (Penn Treebank) and the official
`ptb_enas_child.py`: one cell layer whose hidden size equals the embedding size,
the softmax tied to the embedding (Inan et al. 2017; Press & Wolf 2017, no
output bias), and variational dropout (Gal & Ghahramani 2016) with masks drawn
once per sequence:

  embedding  word-type dropout: a word's embedding is dropped for the whole
             sequence (keep `embed_keep`; official: an approximation of it)
  x          the cell input, keep `input_keep` (official x_keep 0.25)
  hidden     every node's recurrent input, keep `hidden_keep` (official 0.75)

Training is truncated BPTT: `loss` runs T steps from a carried state and
returns the state to carry (without gradient) into the next window; the loss is
the official one (sum over time of the batch-mean cross-entropy) plus the
official slowness term `slowness * sum_t ||h_t - h_{t-1}||^2 / B`.

Where the paper and the official code differ, and what is followed here:

| point          | paper             | official code            | here             |
|----------------|-------------------|--------------------------|------------------|
| loss scale     | not stated        | sum over the T steps of  | official: the    |
|                |                   | the batch-mean xent, so  | learning rates   |
|                |                   | lr and clip see T x the  | of the official  |
|                |                   | per-token gradient       | scripts carry    |
| embedding drop | per word type     | (B, T) mask, zeroing a   | exact: one mask  |
|                |                   | word's later repeats in  | per (sequence,   |
|                |                   | the window (approximate) | word type)       |
| output drop    | not stated        | `o_keep` flag, mask made | none             |
|                |                   | but never applied        |                  |
| state carry    | not stated        | across windows, stopped  | the same         |
|                |                   | gradient, even when the  |                  |
|                |                   | sampled child changes    |                  |
| test eval      | not stated        | batch 1, one step at a   | `eval_batch_size`|
|                |                   | time, state carried      | rows, T steps    |
|                |                   |                          | (paper preset 1) |

`cell_fn(cell_params, x, h, x_mask, h_mask) -> h` is either cell of
`nas.rnn_cell`, so the same code trains the supernet and the retrained child.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas import rnn_cell
from shared import draws
from shared.errors import ConfigError

CellFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class LMConfig:
    vocab_size: int
    hidden: int
    num_nodes: int = 12
    embed_keep: float = 1.0
    input_keep: float = 1.0
    hidden_keep: float = 1.0
    slowness: float = 0.0
    batch_norm: bool = False  # search-time batch norm in the cell (rnn_cell)


def init(key: jax.Array, config: LMConfig, standalone: bool = False) -> dict:
    """{"embedding": (V, H), "cell": ...} with the official uniform init."""
    key_emb, key_cell = jax.random.split(key)
    embedding = rnn_cell.uniform_init(
        key_emb, (config.vocab_size, config.hidden), config.hidden
    )
    cell = rnn_cell.init(
        key_cell, config.num_nodes, config.hidden, standalone, config.batch_norm
    )
    return {"embedding": embedding, "cell": cell}


def _keep_mask(key, keep: float, shape) -> jax.Array | None:
    if keep >= 1.0:
        return None
    mask = draws.flat(jax.random.bernoulli, key, shape, p=keep)
    return mask.astype(jnp.float32) / keep


def draw_masks(key: jax.Array, config: LMConfig, tokens: jax.Array) -> dict:
    """Variational masks for a batch of sequences `tokens` (B, T)."""
    batch = tokens.shape[0]
    key_e, key_x, key_h = jax.random.split(key, 3)
    by_type = _keep_mask(key_e, config.embed_keep, (batch, config.vocab_size))
    embed = None
    if by_type is not None:
        embed = jnp.take_along_axis(by_type, tokens, axis=1)[..., None]
    return {
        "embed": embed,
        "x": _keep_mask(key_x, config.input_keep, (batch, config.hidden)),
        "h": _keep_mask(key_h, config.hidden_keep, (batch, config.hidden)),
    }


def unroll(cell_fn: CellFn, params, tokens, h0, masks=None):
    """Runs the cell over `tokens` (B, T) from `h0` (B, H): ((T, B, H), h_T)."""
    masks = masks or {"embed": None, "x": None, "h": None}
    embedded = params["embedding"][tokens]
    if masks["embed"] is not None:
        embedded = embedded * masks["embed"]

    def step(h, x):
        h = cell_fn(params["cell"], x, h, masks["x"], masks["h"])
        return h, h

    h_last, hs = jax.lax.scan(step, h0, jnp.swapaxes(embedded, 0, 1))
    return hs, h_last


def token_xent(params, hs, targets):
    """(T, B) cross-entropy of tied-softmax logits `hs @ E^T` on `targets` (B, T)."""
    logits = hs @ params["embedding"].T
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets.T)


def loss(cell_fn: CellFn, params, config: LMConfig, batch, h0, key=None):
    """Training loss of one BPTT window; dropout when `key` is given.

    Returns:
      (loss, (mean cross-entropy per token, h_T without gradient)).
    """
    masks = None if key is None else draw_masks(key, config, batch["x"])
    hs, h_last = unroll(cell_fn, params, batch["x"], h0, masks)
    xent = token_xent(params, hs, batch["y"])
    value = xent.sum(0).mean()
    if config.slowness:  # official: over the window's own steps, not from h0
        change = ((hs[1:] - hs[:-1]) ** 2).sum(-1).mean(-1).sum()
        value += config.slowness * change
    return value, (xent.mean(), jax.lax.stop_gradient(h_last))


def windows(stream, batch_size: int, bptt: int):
    """A host token stream (N,) as inputs and targets (W, B, T), row-major as
    the official `ptb_input_producer`: row b is tokens [b L, (b + 1) L)."""
    stream = np.asarray(stream)
    length = (stream.shape[0] - 1) // batch_size
    count = length // bptt
    if count < 1:
        raise ConfigError(
            f"a split of {stream.shape[0]} tokens has no window of {batch_size} "
            f"sequences x {bptt} steps; lower config.bptt or the batch size "
            "(config.*batch_size), or use more tokens (config.*_tokens = 0: all)"
        )
    rows = np.arange(batch_size)[:, None] * length
    cols = np.arange(count * bptt)[None, :]
    x = stream[rows + cols].reshape(batch_size, count, bptt).swapaxes(0, 1)
    y = stream[rows + cols + 1].reshape(batch_size, count, bptt).swapaxes(0, 1)
    return x, y


def evaluate(cell_fn: CellFn, params, x_windows, y_windows):
    """Mean cross-entropy (nats per token) over windows (W, B, T), state carried.

    Perplexity is `exp` of it. No dropout; the state starts at zero.
    """
    batch, hidden = x_windows.shape[1], params["embedding"].shape[1]

    def window(h, xy):
        hs, h = unroll(cell_fn, params, xy[0], h)
        return h, token_xent(params, hs, xy[1]).mean()

    h0 = jnp.zeros((batch, hidden), jnp.float32)
    _, xents = jax.lax.scan(window, h0, (x_windows, y_windows))
    return xents.mean()
