"""snnTorch, Norse and Spyx on issue 3's two SNN workloads, JSON lines out.

    .venv-peers/bin/python benchmarks/peers/snn_peers.py --seconds=20 --repeats=3

Run with the peers' own environment (`.venv-peers`: torch CPU, snntorch, norse,
spyx), never imported by the package or its tests. The protocol is the one of
`benchmarks/snn_throughput.py`: rate coding inside the step (each library's own
Bernoulli encoder), full BPTT over T=25, Adam 1e-3, cross-entropy on output
spike counts, beta 0.9, threshold 1, fast-sigmoid (SuperSpike) slope 25;
  mlp   784 -> LIF 256 -> LIF 10, batch 128;
  conv  12C5-MP2-LIF-64C5-MP2-LIF-FC10-LIF on 28x28, batch 64.
Per row: two warm-up steps, then `--seconds` of steps, `--repeats` times; the
median samples/s and the process's peak RSS (one process per library and
workload: `--libraries`/`--workloads` pick them; run them one at a time).

Each library keeps its own neuron semantics, which cost the same work:
snnTorch `Leaky` (subtract reset, detached, reset delayed one step); Norse
`LIFBoxCell` (dt * tau_mem_inv = 0.1, so the decay is 0.9; zero reset, Norse's
`super` surrogate with alpha 25); Spyx `LIF` (beta 0.9, subtract reset from the
previous step's spikes, `superspike(25)`), run with `spyx.nn.run` (one
`lax.scan` over time through every layer, as Spyx's examples do).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np

T = 25
WORKLOADS = {"mlp": 128, "conv": 64}


def timed(step, batch_size, seconds, repeats, sync=lambda: None):
    for _ in range(2):  # a second call: a jit may retrace on its own outputs
        step()
    sync()
    rates = []
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            steps += 1
        sync()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def torch_models(library, workload):
    import torch
    from torch import nn

    if library == "snntorch":
        import snntorch
        from snntorch import surrogate

        def neuron():
            return snntorch.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(25))

        def state(layer, _shape):
            return layer.init_leaky()

        def advance(layer, x, mem):
            return layer(x, mem)

    else:
        import norse.torch as norse
        from norse.torch.functional import reset

        params = norse.LIFBoxParameters(
            tau_mem_inv=torch.tensor(100.0),
            v_th=torch.tensor(1.0),
            alpha=torch.tensor(25.0),
            method="super",
            reset_method=getattr(reset, "reset_subtract", reset.reset_value),
        )

        def neuron():
            return norse.LIFBoxCell(params)

        def state(_layer, _shape):
            return None

        def advance(layer, x, s):
            return layer(x, s)

    if workload == "mlp":
        weighted = nn.ModuleList([nn.Linear(784, 256), nn.Linear(256, 10)])
    else:
        weighted = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, 12, 5), nn.MaxPool2d(2)),
                nn.Sequential(nn.Conv2d(12, 64, 5), nn.MaxPool2d(2)),
                nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 10)),
            ]
        )
    neurons = nn.ModuleList([neuron() for _ in weighted])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.weighted, self.neurons = weighted, neurons

        def forward(self, spikes):  # (T, B, ...) -> (T, B, 10)
            states = [state(n, None) for n in self.neurons]
            out = []
            for t in range(spikes.shape[0]):
                x = spikes[t]
                for i, (w, n) in enumerate(
                    zip(self.weighted, self.neurons, strict=True)
                ):
                    x, states[i] = advance(n, w(x), states[i])
                out.append(x)
            return torch.stack(out)

    return Net()


def torch_step(library, workload, batch_size):
    import torch

    torch.manual_seed(0)
    net = torch_models(library, workload)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    shape = (batch_size, 784) if workload == "mlp" else (batch_size, 1, 28, 28)
    images = torch.rand(shape)
    labels = torch.randint(0, 10, (batch_size,))
    if library == "snntorch":
        from snntorch import spikegen

        def encode(x):
            return spikegen.rate(x, num_steps=T)
    else:
        import norse.torch as norse

        encoder = norse.PoissonEncoder(T, f_max=1000.0)  # p = x * f_max * dt

        def encode(x):
            return encoder(x)

    def step():
        spikes = encode(images)
        counts = net(spikes).sum(0)
        loss = torch.nn.functional.cross_entropy(counts, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, lambda: None


def spyx_step(workload, batch_size):
    import jax
    import jax.numpy as jnp
    import optax
    import spyx
    from flax import nnx

    rngs = nnx.Rngs(0)
    act = spyx.axn.superspike(25)

    def lif(shape):
        return spyx.nn.LIF(shape, beta=0.9, activation=act, rngs=rngs)

    if workload == "mlp":
        model = spyx.nn.Sequential(
            nnx.Linear(784, 256, rngs=rngs),
            lif((256,)),
            nnx.Linear(256, 10, rngs=rngs),
            lif((10,)),
        )
        shape = (batch_size, 784)
    else:

        def pool(x):
            return nnx.max_pool(x, (2, 2), (2, 2))

        model = spyx.nn.Sequential(
            nnx.Conv(1, 12, (5, 5), padding="VALID", rngs=rngs),
            pool,
            lif((12, 12, 12)),
            nnx.Conv(12, 64, (5, 5), padding="VALID", rngs=rngs),
            pool,
            lif((4, 4, 64)),
            spyx.nn.Flatten(),
            nnx.Linear(1024, 10, rngs=rngs),
            lif((10,)),
        )
        shape = (batch_size, 28, 28, 1)
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, spikes, labels):
        out, _ = spyx.nn.run(nnx.merge(graphdef, params), spikes)
        return optax.softmax_cross_entropy_with_integer_labels(
            out.sum(0), labels
        ).mean()

    @jax.jit
    def train(params, opt_state, images, labels, key):
        spikes = jax.random.bernoulli(key, images, (T, *images.shape))
        grads = jax.grad(loss_fn)(params, spikes.astype(jnp.float32), labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random(shape, np.float32))
    labels = jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)
    carry = {"params": params, "opt": opt_state, "n": 0}
    key = jax.random.key(1)

    def step():
        carry["params"], carry["opt"] = train(
            carry["params"],
            carry["opt"],
            images,
            labels,
            jax.random.fold_in(key, carry["n"]),
        )
        carry["n"] += 1

    return step, lambda: jax.block_until_ready(carry["params"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="mlp,conv")
    parser.add_argument("--libraries", default="snntorch,norse,spyx")
    parser.add_argument("--torch_threads", type=int, default=2)
    args = parser.parse_args()
    for library in args.libraries.split(","):
        for workload in args.workloads.split(","):
            if workload not in WORKLOADS:
                raise SystemExit(f"--workloads: unknown {workload!r}; use mlp,conv")
            batch_size = WORKLOADS[workload]
            if library == "spyx":
                step, sync = spyx_step(workload, batch_size)
                version = __import__("spyx").__version__
            elif library in ("snntorch", "norse"):
                import torch

                torch.set_num_threads(args.torch_threads)
                step, sync = torch_step(library, workload, batch_size)
                version = __import__(library).__version__
            else:
                raise SystemExit(
                    f"--libraries: unknown {library!r}; use snntorch,norse,spyx"
                )
            rate = timed(step, batch_size, args.seconds, args.repeats, sync)
            row = {
                "workload": f"snn_{workload}",
                "impl": library,
                "version": version,
                "samples_per_second": round(rate, 1),
                "peak_rss_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
