"""Local learning rules from pre/post spike trains and their low-pass traces.

A trace is a spike train filtered by an exponential kernel,
  x[t] = decay * x[t-1] + s[t],   decay = exp(-dt / tau),
so x[t] sums exp(-(t - t_k) dt / tau) over past spikes t_k. The weight change of
synapse (i -> j) is then built from the spikes and traces on its two sides:

  pair-based STDP (Song, Miller & Abbott 2000, "Competitive Hebbian learning
  through spike-timing-dependent synaptic plasticity", Nat. Neurosci.; trace
  form of Morrison, Diesmann & Gerstner 2008, Biol. Cybern.):
      dW_ij[t] = a_plus * x_pre_i[t-] * s_post_j[t]      pre before post: LTP
               - a_minus * s_pre_i[t] * x_post_j[t-]     post before pre: LTD
    with x[t-] = decay * x[t-1] the trace just before step t's spikes,
    so one pre spike at t_pre and one post spike at t_post = t_pre + d (d > 0)
    give dW = a_plus * exp(-d dt / tau_plus), and d < 0 gives
    -a_minus * exp(d dt / tau_minus); simultaneous spikes do not interact.

  Hebbian rule from low-pass traces (the issue's seed rule):
      dW_ij[t] = rate * (x_post_j[t] * x_pre_i[t] - oja * x_post_j[t]^2 * W_ij)
    a correlation rule on filtered activity; `oja > 0` adds Oja's (1982)
    normalising decay that keeps the weights bounded.

Weights are (N_pre, N_post) as in `snn.network` (`current = spikes @ W`);
spikes are (B, N) per step and changes are summed over the batch.
"""

from __future__ import annotations

import dataclasses
import math

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TraceState:
    pre: jax.Array  # (B, N_pre)
    post: jax.Array  # (B, N_post)


def init_traces(batch: int, num_pre: int, num_post: int) -> TraceState:
    return TraceState(jnp.zeros((batch, num_pre)), jnp.zeros((batch, num_post)))


def decay_of(tau: float, dt: float) -> float:
    return math.exp(-dt / tau)


@dataclasses.dataclass(frozen=True)
class STDP:
    """Pair-based STDP with all-to-all pairing through traces (times in ms)."""

    a_plus: float = 1e-2
    a_minus: float = 1.05e-2
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    dt: float = 1.0

    def init(self, batch: int, num_pre: int, num_post: int) -> TraceState:
        return init_traces(batch, num_pre, num_post)

    def step(self, state: TraceState, pre: jax.Array, post: jax.Array):
        """One step: spikes (B, N_pre), (B, N_post) -> (state, dW (N_pre, N_post))."""
        # traces just before this step's spikes, so simultaneous spikes don't pair
        pre_trace = decay_of(self.tau_plus, self.dt) * state.pre
        post_trace = decay_of(self.tau_minus, self.dt) * state.post
        potentiation = self.a_plus * jnp.einsum("bi,bj->ij", pre_trace, post)
        depression = self.a_minus * jnp.einsum("bi,bj->ij", pre, post_trace)
        state = TraceState(pre_trace + pre, post_trace + post)
        return state, potentiation - depression


@dataclasses.dataclass(frozen=True)
class Hebbian:
    """dW = rate * (x_post x_pre - oja * x_post^2 W) on low-pass traces."""

    rate: float = 1e-3
    tau_pre: float = 20.0
    tau_post: float = 20.0
    oja: float = 0.0
    dt: float = 1.0

    def init(self, batch: int, num_pre: int, num_post: int) -> TraceState:
        return init_traces(batch, num_pre, num_post)

    def step(self, state, pre, post, weights):
        """Traces are updated first, so a spike counts in its own step's change."""
        state = TraceState(
            decay_of(self.tau_pre, self.dt) * state.pre + pre,
            decay_of(self.tau_post, self.dt) * state.post + post,
        )
        hebb = jnp.einsum("bi,bj->ij", state.pre, state.post)
        decay = jnp.sum(state.post**2, axis=0) * weights
        return state, self.rate * (hebb - self.oja * decay)


def accumulate_stdp(rule: STDP, pre: jax.Array, post: jax.Array) -> jax.Array:
    """Total STDP change over recorded trains pre (T, B, N_pre), post (T, B, N_post)."""

    def body(state, spikes):
        state, change = rule.step(state, *spikes)
        return state, change

    state = rule.init(pre.shape[1], pre.shape[2], post.shape[2])
    _, changes = jax.lax.scan(body, state, (pre, post))
    return changes.sum(0)
