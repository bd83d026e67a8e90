"""A coordinatewise LSTM optimizer meta-trained by truncated backpropagation.

Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford, de Freitas,
"Learning to learn by gradient descent by gradient descent", 2016,
arXiv:1606.04474; reproduces Figure 2 (left: random 10-d quadratics; middle:
the one-hidden-layer, 20-unit sigmoid MLP on MNIST) and the 200-step
generalisation of Figure 3: the learned optimizer against Adam, RMSProp and
SGD with tuned learning rates on held-out tasks.

The optimizer `m(grad, state; phi)` is a two-layer LSTM with 20 units, shared
by every coordinate of the optimizee's flat parameter vector: the LSTM runs on
a (n, 2) batch of preprocessed gradients, one row per coordinate, so the same
weights serve any number of parameters. Gradients are preprocessed as in the
paper's appendix A (log magnitude and sign, p = 10) and the output is scaled by
0.01: `theta_{t+1} = theta_t + 0.01 * m(grad_t)`. Meta-training minimises the
sum of optimizee losses over an unroll of T = 20 steps (`lax.scan`), with the
optimizee's gradients treated as constants (`drop_hessian`, the paper's
dashed edges) unless asked otherwise; the optimizee state is carried over from
one truncation to the next and reset on a new task (`train_learned_opt.py`).

The authors' code (github.com/deepmind/learning-to-learn, `util.py`,
`meta.py`, `train.py`) agrees on the 2 x 20 LSTM, the 0.01 output scale, the
unroll of 20 over 100-step optimizees and Adam 1e-3 on phi without gradient
clipping, run for 10,000 optimizees (50,000 meta-steps); its `LogAndSign`
preprocessing uses p = 5 where the appendix says p = 10 (kept here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metalearn import embeddings

HIDDEN = 20
LAYERS = 2
PREPROCESS_P = 10.0
OUTPUT_SCALE = 0.01


class LSTMState(NamedTuple):
    """Per-coordinate LSTM memory: `h`, `c` of shape (LAYERS, n, HIDDEN)."""

    h: jax.Array
    c: jax.Array


def preprocess(grad: jax.Array, p: float = PREPROCESS_P) -> jax.Array:
    """(n,) gradients -> (n, 2) inputs, paper appendix A.

    (log|g| / p, sign g) if |g| >= exp(-p), else (-1, exp(p) * g): both parts
    stay in a small range whatever the gradient's scale.
    """
    big = jnp.abs(grad) >= jnp.exp(-p)
    safe = jnp.maximum(jnp.abs(grad), jnp.exp(-p))  # finite log on both branches
    magnitude = jnp.where(big, jnp.log(safe) / p, -1.0)
    direction = jnp.where(big, jnp.sign(grad), jnp.exp(p) * grad)
    return jnp.stack([magnitude, direction], axis=-1)


def init(key: jax.Array, hidden: int = HIDDEN, layers: int = LAYERS) -> dict:
    """The meta-parameters phi: LSTM layers and the linear output.

    Returns:
      {"lstm": [{"w": (in + hidden, 4 hidden), "b": (4 hidden,)}] * layers,
       "out": {"w": (hidden, 1), "b": (1,)}}; forget-gate biases start at 1.
    """
    keys = jax.random.split(key, layers + 1)
    sizes = [2] + [hidden] * layers
    lstm = []
    for i in range(layers):
        fan_in = sizes[i] + hidden
        w = embeddings.normal(keys[i], (fan_in, 4 * hidden)) / jnp.sqrt(fan_in)
        b = jnp.zeros((4 * hidden,)).at[hidden : 2 * hidden].set(1.0)
        lstm.append({"w": w, "b": b})
    out = {
        "w": embeddings.normal(keys[-1], (hidden, 1)) * 0.1 / jnp.sqrt(hidden),
        "b": jnp.zeros((1,)),
    }
    return {"lstm": lstm, "out": out}


def init_state(num_coords: int, hidden: int = HIDDEN, layers: int = LAYERS):
    zeros = jnp.zeros((layers, num_coords, hidden))
    return LSTMState(zeros, zeros)


def _lstm_cell(layer, x, h, c):
    gates = jnp.concatenate([x, h], axis=-1) @ layer["w"] + layer["b"]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def update(phi: dict, grad: jax.Array, state: LSTMState):
    """One optimizer step for every coordinate at once.

    Args:
      phi: meta-parameters from `init`.
      grad: (n,) the optimizee's flat gradient.
      state: `LSTMState` with (LAYERS, n, HIDDEN) arrays.

    Returns:
      (the additive update (n,), the new state).
    """
    x = preprocess(grad)
    hs, cs = [], []
    for i, layer in enumerate(phi["lstm"]):
        h, c = _lstm_cell(layer, x, state.h[i], state.c[i])
        hs.append(h)
        cs.append(c)
        x = h
    out = x @ phi["out"]["w"] + phi["out"]["b"]
    return OUTPUT_SCALE * out[:, 0], LSTMState(jnp.stack(hs), jnp.stack(cs))


def unroll(
    phi: dict,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    theta: jax.Array,
    state: LSTMState,
    keys: jax.Array,
    drop_hessian: bool = True,
):
    """Runs the learned optimizer for `len(keys)` steps (`lax.scan`).

    Args:
      phi: meta-parameters.
      loss_fn: `(theta (n,), key) -> scalar`, the optimizee's (minibatch) loss.
      theta: (n,) the optimizee's flat parameters.
      state: the optimizer's `LSTMState`.
      keys: (T,) one key per step (its minibatch).
      drop_hessian: treat the optimizee's gradients as constants in the
        meta-gradient (the paper's simplification; False keeps every term).

    Returns:
      (theta_T, state_T, losses (T,) = f_t(theta_t) for t = 0..T-1, each on
      its step's minibatch).
    """

    def body(carry, key):
        theta, state = carry
        loss, grad = jax.value_and_grad(loss_fn)(theta, key)
        if drop_hessian:
            grad = jax.lax.stop_gradient(grad)
        delta, state = update(phi, grad, state)
        return (theta + delta, state), loss

    (theta, state), losses = jax.lax.scan(body, (theta, state), keys)
    return theta, state, losses


def meta_loss(phi, loss_fn, theta, state, keys, drop_hessian: bool = True):
    """Mean of f(theta_1..theta_T) over one truncation; aux (theta_T, state_T).

    f(theta_0) does not depend on phi, so the sum runs from theta_1 (each on
    its step's minibatch) to theta_T (on the last step's minibatch).
    """
    theta, state, losses = unroll(phi, loss_fn, theta, state, keys, drop_hessian)
    final = loss_fn(theta, keys[-1])
    return jnp.concatenate([losses[1:], final[None]]).mean(), (theta, state)
