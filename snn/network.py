"""Feed-forward spiking networks run time-major `(T, B, ...)`, and their ANN twins.

A network is a stack of weighted layers, each followed by a neuron layer:
  MLP  784-800-10 (STBP: Wu et al. 2018, "Spatio-Temporal Backpropagation for
       Training High-performance Spiking Neural Networks", arXiv:1706.02609,
       Table 2, 98.89% on MNIST);
  CNN  12C5-MP2-64C5-MP2-FC10 (the snnTorch tutorial CNN; STBP reports 99.42%
       for a larger 15C5-P2-40C5-P2-300 CNN).
The last neuron layer is the readout: LIF spikes (decode by count) or a
non-spiking leaky integrator (decode by max or final membrane).

Speed (../shared/PERF-NOTES.md): convolutions inside `lax.scan` are 5-30x
slower on XLA:CPU than outside, so the network runs layer by layer: a conv
layer (conv, max-pool) is applied to all T frames at once, and only the neuron
state is scanned over time. The T*B frames go through the conv in unrolled
pieces of `chunk` frames (cache blocking: one conv on 1,600 frames ran 2.7x
slower per frame than 50 convs on 32, SNN-CONV 45 vs 122 samples/s; the
1-channel conv as im2col x matmul measured no faster, snn/README.md). Dense
layers are the opposite: one (T*B, 784) x (784, 256) matmul fell out of the
2 MB L2 cache and its weight gradient took 66 ms against 28 ms for T per-step
(B, 784) matmuls in a scan, so by default (`dense_in_scan`) a dense layer's matmul
runs per step inside its neuron scan. Either way a feed-forward net computes
exactly what a step-by-step loop computes (tested against one). `remat` wraps
each neuron step in `jax.checkpoint`; `truncate=K` cuts the gradient through
the neuron state every K steps (truncated BPTT). With `spiking=False` the same
layers form an ANN with ReLU.

`schedule="step"` runs the other way round, as recurrent nets and streaming
input need: one scan over time whose step advances every layer by one step
(each conv on a (B, ...) batch). It computes the same spikes, membranes and
gradients (tested), more slowly on CPU for convolutions.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from shared.errors import ConfigError
from snn import conv as conv_lib
from snn import layers as layers_lib
from snn import neurons as neurons_lib

SCHEDULES = ("layer", "step")


@dataclasses.dataclass(frozen=True)
class Network:
    """Static description; `init` makes the parameters, `apply` runs it.

    Attributes:
      layers: the weighted layers (see `layers.mlp_layers`, `layers.cnn_layers`).
      input_shape: one sample, e.g. (784,) or (28, 28, 1).
      neuron: hidden (and spiking readout) neuron, e.g. `neurons.LIF()`.
      readout: "spikes" (last layer is `neuron`) or "membrane" (leaky integrator).
      spiking: False = ANN with ReLU, no time axis.
      remat: `jax.checkpoint` each neuron step (recompute in the backward pass).
      truncate: truncated-BPTT window in steps (0 = full BPTT).
      dense_in_scan: run dense layers' matmuls per step inside the neuron scan
        (B-row matmuls stay in cache; see the module docstring). On a GPU set
        False: those matmuls are memory-bound there (snn/README.md).
      schedule: "layer" (each layer over all T, then the next) or "step" (one
        scan over time through every layer: the recurrent-net order).
      chunk: in the layer schedule, frames per call of a layer applied to all
        T*B frames (conv layers; dense ones with `dense_in_scan=False`); the
        calls are unrolled inside the jit. 0 = one call. Same numbers either way.
      conv: convolution kernels, "lax" (XLA's conv), "matmul" (`snn.conv`:
        pool folded into conv1, matmul gradients; SNN-CONV 1.24-1.30x faster
        on this CPU, snn/README.md) or "auto" (matmul on CPU, lax elsewhere:
        not measured on a GPU). Same numbers up to float rounding.
    """

    layers: tuple[layers_lib.Layer, ...]
    input_shape: tuple[int, ...]
    neuron: neurons_lib.LIF = neurons_lib.LIF()
    readout: str = "spikes"
    spiking: bool = True
    remat: bool = False
    truncate: int = 0
    dense_in_scan: bool = True
    schedule: str = "layer"
    chunk: int = 32
    conv: str = "auto"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; set --config.schedule to one "
                f"of {SCHEDULES}."
            )
        if self.chunk < 0:
            raise ConfigError(
                f"chunk={self.chunk} must be >= 0 (0 = no chunking); set "
                "--config.chunk."
            )

        if self.conv not in ("auto", *conv_lib.IMPLS):
            raise ConfigError(
                f"unknown conv {self.conv!r}; set --config.conv to one of "
                f"{('auto', *conv_lib.IMPLS)}."
            )

    def conv_impl(self) -> str:
        if self.conv != "auto":
            return self.conv
        return "matmul" if jax.default_backend() == "cpu" else "lax"

    def neuron_at(self, index: int):
        if index == len(self.layers) - 1 and self.readout == "membrane":
            return neurons_lib.LeakyIntegrator(self.neuron.beta)
        return self.neuron

    def init(self, key: jax.Array) -> dict:
        """PyTorch's default init, U(+-1/sqrt(fan_in)) for weights and biases.

        All of them come from one `uniform` draw, sliced per array: each
        threefry call site costs about 0.6 s of XLA:CPU compile time.
        """
        params = {"layers": [], "neurons": []}
        shapes = []
        for layer, (shape_in, _) in zip(
            self.layers,
            layers_lib.layer_shapes(self.layers, self.input_shape),
            strict=True,
        ):
            if layer.kind == "dense":
                w_shape = (math.prod(shape_in), layer.features)
            else:
                w_shape = (layer.kernel, layer.kernel, shape_in[-1], layer.features)
            shapes.append((w_shape, (layer.features,)))
        sizes = [math.prod(w) + math.prod(b) for w, b in shapes]
        draws = jax.random.uniform(key, (sum(sizes),), minval=-1.0, maxval=1.0)
        offset = 0
        for index, (w_shape, b_shape) in enumerate(shapes):
            bound = 1.0 / math.sqrt(math.prod(w_shape[:-1]))
            w_end = offset + math.prod(w_shape)
            b_end = w_end + math.prod(b_shape)
            params["layers"].append(
                {
                    "w": bound * draws[offset:w_end].reshape(w_shape),
                    "b": bound * draws[w_end:b_end],
                }
            )
            offset = b_end
            neuron = self.neuron_at(index)
            params["neurons"].append(
                neuron.init_params(b_shape[0]) if self.spiking else {}
            )
        return params

    def apply(self, params: dict, inputs: jax.Array) -> dict[str, jax.Array]:
        """Runs the network.

        Args:
          params: from `init`.
          inputs: spikes (T, B, *input_shape) (or (B, *input_shape) floats for
            an ANN).

        Returns:
          {"spikes": (T, B, C) readout spikes, "membrane": (T, B, C) readout
          membrane, "layer_inputs": [(T, B, ...) input of each layer]};
          for an ANN {"logits": (B, C), "layer_inputs": [...]}.
        """
        if self.spiking and self.schedule == "step":
            return self._apply_per_step(params, inputs)
        lead = inputs.shape[: inputs.ndim - len(self.input_shape)]
        x, layer_inputs = inputs, []
        for index, layer in enumerate(self.layers):
            layer_inputs.append(x)
            weighted = functools.partial(
                layers_lib.weighted,
                layer,
                params["layers"][index],
                conv=self.conv_impl(),
            )
            if self.spiking and layer.kind == "dense" and self.dense_in_scan:
                spikes, membrane = run_neuron(
                    self.neuron_at(index),
                    params["neurons"][index],
                    x,
                    remat=self.remat,
                    truncate=self.truncate,
                    weighted=weighted,
                    keep_membrane=index == len(self.layers) - 1,
                )
                x = spikes
                continue
            x = layers_lib.chunked(
                weighted, x.reshape(-1, *x.shape[len(lead) :]), self.chunk
            )
            x = x.reshape(*lead, *x.shape[1:])
            last = index == len(self.layers) - 1
            if not self.spiking:
                x = x if last else jax.nn.relu(x)
                continue
            spikes, membrane = run_neuron(
                self.neuron_at(index),
                params["neurons"][index],
                x,
                remat=self.remat,
                truncate=self.truncate,
                keep_membrane=last,
            )
            x = spikes
        if not self.spiking:
            return {"logits": x, "layer_inputs": layer_inputs}
        return {"spikes": spikes, "membrane": membrane, "layer_inputs": layer_inputs}

    def _apply_per_step(self, params: dict, inputs: jax.Array) -> dict:
        """`apply` as one scan over time, every layer inside the step."""
        last = len(self.layers) - 1

        def body(states, inputs_t):
            t, x = inputs_t
            if self.truncate:
                cut = t % self.truncate == 0
                states = jax.tree.map(
                    lambda s: jnp.where(cut, jax.lax.stop_gradient(s), s), states
                )
            new_states, layer_inputs = [], []
            for index, layer in enumerate(self.layers):
                layer_inputs.append(x)
                current = layers_lib.weighted(
                    layer, params["layers"][index], x, conv=self.conv_impl()
                )
                state, x = self.neuron_at(index).step(
                    params["neurons"][index], states[index], current
                )
                new_states.append(state)
            return new_states, (layer_inputs[1:], x, new_states[last].membrane)

        if self.remat:
            body = jax.checkpoint(body)
        batch = inputs.shape[1]
        states = [
            self.neuron_at(index).init_state((batch, *out), inputs.dtype)
            for index, (_, out) in enumerate(
                layers_lib.layer_shapes(self.layers, self.input_shape)
            )
        ]
        steps = jnp.arange(inputs.shape[0])
        _, (hidden, spikes, membrane) = jax.lax.scan(body, states, (steps, inputs))
        return {
            "spikes": spikes,
            "membrane": membrane,
            "layer_inputs": [inputs, *hidden],
        }


def run_neuron(
    neuron,
    params: dict,
    currents: jax.Array,
    *,
    remat: bool = False,
    truncate: int = 0,
    weighted=None,
    keep_membrane: bool = True,
) -> tuple[jax.Array, jax.Array | None]:
    """Scans `neuron` over time: currents (T, B, ...) -> (spikes, membrane).

    With `weighted`, `currents` are the layer's inputs and each step's current
    is `weighted(currents[t])`. `keep_membrane=False` returns None for the
    membrane: stacking it (and a step index, needed only to truncate) made
    the backward pass of a 784-256-10 step 2x slower.
    """
    num_steps = currents.shape[0]

    def body(state, inputs):
        t, current = inputs if truncate else (None, inputs)
        if weighted is not None:
            current = weighted(current)
        if truncate:
            cut = t % truncate == 0
            state = jax.tree.map(
                lambda s: jnp.where(cut, jax.lax.stop_gradient(s), s), state
            )
        state, spikes = neuron.step(params, state, current)
        return state, (spikes, state.membrane if keep_membrane else None)

    if remat:
        body = jax.checkpoint(body)
    shape = currents.shape[1:]
    if weighted is not None:
        shape = jax.eval_shape(weighted, currents[0]).shape
    state = neuron.init_state(shape, currents.dtype)
    xs = (jnp.arange(num_steps), currents) if truncate else currents
    _, (spikes, membrane) = jax.lax.scan(body, state, xs)
    return spikes, membrane
