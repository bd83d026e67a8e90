"""Spiking neurons as pure `init_state` / `step` functions over arrays.

Each neuron type is a frozen dataclass of static hyperparameters with
  init_params(size) -> dict      learnable per-neuron parameters (may be empty)
  init_state(shape) -> <X>State  zero state for currents of `shape`, e.g. (B, N)
  step(params, state, current) -> (state, spikes)
so a layer over time is `lax.scan(lambda s, i: neuron.step(p, s, i), ...)`.

One time step of the leaky integrate-and-fire (LIF) neuron, discretised as in
Neftci, Mostafa & Zenke 2019 ("Surrogate Gradient Learning in Spiking Neural
Networks", arXiv:1901.09948, eqs. 2-4):
  membrane  u = beta * v + current
  spikes    s = heaviside(u - threshold)        (surrogate backward)
  reset     v = u - threshold * s   (subtract)  or  v = u * (1 - s)   (zero)
The reset uses `stop_gradient(s)` when `detach_reset` (snnTorch's
`reset_mechanism` with `reset_delay=False` and detached reset), the usual choice.

  Synaptic (current-based) LIF: i = alpha * i + current; u = beta * v + i.
  Adaptive LIF (Bellec et al. 2018, "Long short-term memory and learning-to-learn
  in networks of spiking neurons", arXiv:1803.09574): the threshold is
  threshold + adapt_strength * a, with a = rho * a + (1 - rho) * s after each step.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp

from shared.errors import ConfigError
from snn import surrogate

RESETS = ("subtract", "zero")


@flax.struct.dataclass
class LIFState:
    membrane: jax.Array


@flax.struct.dataclass
class SynapticState:
    synaptic: jax.Array
    membrane: jax.Array


@flax.struct.dataclass
class ALIFState:
    membrane: jax.Array
    adaptation: jax.Array


@dataclasses.dataclass(frozen=True)
class LIF:
    """Leaky integrate-and-fire neuron.

    Attributes:
      beta: membrane decay per step, in (0, 1].
      threshold: firing threshold.
      reset: "subtract" (keep the overshoot) or "zero".
      surrogate: a name in `snn.surrogate.SURROGATES`; scale None = its default.
      learn_beta, learn_threshold: make them per-neuron parameters (beta is
        clipped to [0, 1] in the step).
      detach_reset: no gradient through the reset term.
    """

    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    surrogate: str = "fast_sigmoid"
    scale: float | None = 25.0
    learn_beta: bool = False
    learn_threshold: bool = False
    detach_reset: bool = True

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ConfigError(
                f"unknown reset {self.reset!r}; set --config.reset to one of {RESETS}."
            )
        surrogate.get(self.surrogate, self.scale)  # fails early on a bad name

    def init_params(self, size: int) -> dict[str, jax.Array]:
        params = {}
        if self.learn_beta:
            params["beta"] = jnp.full((size,), self.beta, jnp.float32)
        if self.learn_threshold:
            params["threshold"] = jnp.full((size,), self.threshold, jnp.float32)
        return params

    def init_state(self, shape: tuple[int, ...], dtype=jnp.float32) -> LIFState:
        return LIFState(jnp.zeros(shape, dtype))

    def _decay_threshold(self, params):
        beta = jnp.clip(params["beta"], 0.0, 1.0) if "beta" in params else self.beta
        return beta, params.get("threshold", self.threshold)

    def _fire(self, membrane, threshold):
        spikes = surrogate.get(self.surrogate, self.scale)(membrane - threshold)
        held = jax.lax.stop_gradient(spikes) if self.detach_reset else spikes
        if self.reset == "subtract":
            return spikes, membrane - held * threshold
        return spikes, membrane * (1.0 - held)

    def step(self, params, state: LIFState, current: jax.Array):
        """One step. `current` (..., N) -> (new state, spikes (..., N))."""
        beta, threshold = self._decay_threshold(params)
        membrane = beta * state.membrane + current
        spikes, membrane = self._fire(membrane, threshold)
        return LIFState(membrane), spikes


@dataclasses.dataclass(frozen=True)
class Synaptic(LIF):
    """Current-based LIF: a synaptic current with decay `alpha` feeds the membrane."""

    alpha: float = 0.8

    def init_state(self, shape, dtype=jnp.float32) -> SynapticState:
        return SynapticState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def step(self, params, state: SynapticState, current: jax.Array):
        beta, threshold = self._decay_threshold(params)
        synaptic = self.alpha * state.synaptic + current
        membrane = beta * state.membrane + synaptic
        spikes, membrane = self._fire(membrane, threshold)
        return SynapticState(synaptic, membrane), spikes


@dataclasses.dataclass(frozen=True)
class AdaptiveLIF(LIF):
    """LIF whose threshold rises by `adapt_strength * a` after spikes (decay rho)."""

    rho: float = 0.95
    adapt_strength: float = 1.8

    def init_state(self, shape, dtype=jnp.float32) -> ALIFState:
        return ALIFState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def step(self, params, state: ALIFState, current: jax.Array):
        beta, threshold = self._decay_threshold(params)
        threshold = threshold + self.adapt_strength * state.adaptation
        membrane = beta * state.membrane + current
        spikes, membrane = self._fire(membrane, threshold)
        adaptation = self.rho * state.adaptation + (1.0 - self.rho) * spikes
        return ALIFState(membrane, adaptation), spikes


@dataclasses.dataclass(frozen=True)
class LeakyIntegrator:
    """Non-spiking readout: u = beta * u + current (decode by max or final u)."""

    beta: float = 0.9

    def init_params(self, size: int) -> dict[str, jax.Array]:
        return {}

    def init_state(self, shape, dtype=jnp.float32) -> LIFState:
        return LIFState(jnp.zeros(shape, dtype))

    def step(self, params, state: LIFState, current: jax.Array):
        membrane = self.beta * state.membrane + current
        return LIFState(membrane), jnp.zeros_like(membrane)


NEURONS = {"lif": LIF, "synaptic": Synaptic, "alif": AdaptiveLIF}


def make_neuron(kind: str, **kwargs) -> LIF:
    """A neuron by name (`lif`, `synaptic`, `alif`) with its hyperparameters."""
    if kind not in NEURONS:
        raise ConfigError(
            f"unknown neuron {kind!r}; set --config.neuron to one of {sorted(NEURONS)}."
        )
    return NEURONS[kind](**kwargs)
