"""The Diehl & Cook (2015) network in Brian 2, an independent reference for ours.

    PYTHONPATH=/tmp/snn_brian2_np .venv-peers/bin/python \
        benchmarks/peers/snn_stdp_brian2.py --data=DIR --train=2000 --out=OUT

(`/tmp/snn_brian2_np` holds numpy<2.4: Brian 2.9 still calls the removed
`ndarray.ptp`.) `DIR` is written by `python -m benchmarks.snn_stdp_trajectory
--export=DIR` (our initial weights, our delays in 0.5 ms steps, the images),
so both networks start from the same weights and delays; only the Poisson
draws differ. Written from the paper (Diehl & Cook, Front. Comput. Neurosci.
9:99, 2015, section 2) and the authors' Brian 1 script
(`Diehl&Cook_spiking_MNIST.py`): conductance-based LIF, forward Euler at
dt = 0.5 ms (Brian 1's integrator for these nonlinear equations), adaptive
threshold theta (+0.05 mV per spike, tau 1e7 ms while learning), 5 ms / 2 ms
refractory, E -> I 10.4 one-to-one, I -> E 17 all-but-self, input rates
pixel / 8 * intensity Hz, 0-10 ms input delays, nearest-spike STDP with a
second post trace (pre: w -= 1e-4 post1; post: w += 1e-2 pre post2before),
weights clipped to [0, 1] and each neuron's column normalised to 78 before
every presentation, 350 ms + 150 ms rest, retries 1 intensity brighter while
fewer than 5 spikes (unbounded unless `--max_repeats`). Brian 2 runs a
delayed synapse's whole `on_pre` at arrival, which equals Brian 1's delayed
STDP (pre trace read `delay` ago, post1 read at arrival).

One JSON line per training image (spikes of the accepted presentation,
repeats, theta mean / max in mV, weight statistics); `--snapshot_every`
saves weights and theta (`OUT/weights_<n>.npy`, `OUT/theta_<n>.npy`) so that
our evaluator can score them; `--label/--test` > 0 then runs the authors'
test mode here (learning off, theta fixed) and prints the accuracy.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import brian2 as b2
import numpy as np


def build(weights, delays, theta_mv):
    b2.defaultclock.dt = 0.5 * b2.ms
    n_input, n = weights.shape
    ns = dict(
        v_rest_e=-65 * b2.mV, v_reset_e=-65 * b2.mV, v_thresh_e=-52 * b2.mV,
        v_rest_i=-60 * b2.mV, v_reset_i=-45 * b2.mV, v_thresh_i=-40 * b2.mV,
        offset=20 * b2.mV, refrac_e=5 * b2.ms, tc_theta=1e7 * b2.ms,
        theta_plus=0.05 * b2.mV, tc_pre=20 * b2.ms, tc_post1=20 * b2.ms,
        tc_post2=40 * b2.ms, nu_pre=1e-4, nu_post=1e-2, wmax=1.0,
    )  # fmt: skip
    exc = b2.NeuronGroup(
        n,
        """
        dv/dt = ((v_rest_e - v) + ge * (-v) + gi * (-100*mV - v)) / (100*ms)
            : volt (unless refractory)
        dge/dt = -ge / (1*ms) : 1
        dgi/dt = -gi / (2*ms) : 1
        dtheta/dt = -learning * theta / tc_theta : volt
        dtimer/dt = 100 : second
        learning : 1 (shared)
        """,
        threshold="(v > theta - offset + v_thresh_e) and (timer > refrac_e)",
        reset="v = v_reset_e; theta += learning * theta_plus; timer = 0*ms",
        refractory=5 * b2.ms,
        method="euler",
        namespace=ns,
    )
    inh = b2.NeuronGroup(
        n,
        """
        dv/dt = ((v_rest_i - v) + ge * (-v) + gi * (-85*mV - v)) / (10*ms)
            : volt (unless refractory)
        dge/dt = -ge / (1*ms) : 1
        dgi/dt = -gi / (2*ms) : 1
        """,
        threshold="v > v_thresh_i",
        reset="v = v_reset_i",
        refractory=2 * b2.ms,
        method="euler",
        namespace=ns,
    )
    exc.v, inh.v = ns["v_rest_e"] - 40 * b2.mV, ns["v_rest_i"] - 40 * b2.mV
    exc.theta = theta_mv * b2.mV
    exc.timer = 1 * b2.second
    exc.learning = 1.0
    inputs = b2.PoissonGroup(n_input, 0 * b2.Hz)
    syn = b2.Synapses(
        inputs,
        exc,
        """
        w : 1
        lr : 1 (shared)
        post2before : 1
        dpre/dt = -pre / tc_pre : 1 (event-driven)
        dpost1/dt = -post1 / tc_post1 : 1 (event-driven)
        dpost2/dt = -post2 / tc_post2 : 1 (event-driven)
        """,
        on_pre="""
        ge_post += w
        pre = 1.0
        w = clip(w - lr * nu_pre * post1, 0, wmax)
        """,
        on_post="""
        post2before = post2
        w = clip(w + lr * nu_post * pre * post2before, 0, wmax)
        post1 = 1.0
        post2 = 1.0
        """,
        namespace=ns,
    )
    syn.connect()
    rows, cols = np.asarray(syn.i[:]), np.asarray(syn.j[:])
    syn.w = weights[rows, cols]
    syn.delay = delays[rows, cols] * 0.5 * b2.ms
    syn.lr = 1.0
    e_to_i = b2.Synapses(exc, inh, on_pre="ge_post += 10.4")
    e_to_i.connect(j="i")
    i_to_e = b2.Synapses(inh, exc, on_pre="gi_post += 17.0")
    i_to_e.connect(condition="i != j")
    counter = b2.SpikeMonitor(exc, record=False)
    net = b2.Network(exc, inh, inputs, syn, e_to_i, i_to_e, counter)
    parts = dict(exc=exc, inputs=inputs, syn=syn, counter=counter)
    return net, dict(parts, rows=rows, cols=cols)


def matrix(parts, n_input, n):
    out = np.zeros((n_input, n))
    out[parts["rows"], parts["cols"]] = np.asarray(parts["syn"].w[:])
    return out


def border_neurons(weights, side=28, margin=4):
    grid = weights.reshape(side, side, -1)
    inner = grid[margin : side - margin, margin : side - margin].sum((0, 1))
    return int((inner < 0.5 * grid.sum((0, 1))).sum())


def show(net, parts, image, learn, max_repeats):
    """The authors' loop for one image: returns (counts (N,), repeats)."""
    syn, counter = parts["syn"], parts["counter"]
    intensity, repeats = 2.0, 0
    while True:
        if learn:  # normalise each neuron's input weights to 78
            values, cols = np.asarray(syn.w[:]), parts["cols"]
            syn.w = values * (78.0 / np.bincount(cols, weights=values))[cols]
        parts["inputs"].rates = image / 8.0 * intensity * b2.Hz
        before = np.asarray(counter.count[:]).copy()
        net.run(350 * b2.ms)
        counts = np.asarray(counter.count[:]) - before
        repeats += 1
        parts["inputs"].rates = 0 * b2.Hz
        net.run(150 * b2.ms)
        if counts.sum() >= 5 or repeats >= max_repeats:
            return counts, repeats
        intensity += 1.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="snn_stdp_trajectory --export")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--label", type=int, default=0)
    parser.add_argument("--test", type=int, default=0)
    parser.add_argument("--max_repeats", type=int, default=1 << 30)
    parser.add_argument("--snapshot_every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data, out = pathlib.Path(args.data), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b2.prefs.codegen.target = "cython"
    b2.seed(args.seed)
    weights = np.load(data / "weights.npy").astype(np.float64)
    delays = np.load(data / "delays.npy")
    theta = np.load(data / "theta.npy").astype(np.float64)
    images = np.load(data / "train_images.npy").reshape(-1, 784).astype(np.float64)
    n_input, n = weights.shape
    net, parts = build(weights, delays, theta)
    exc = parts["exc"]
    log = open(out / "trajectory.jsonl", "a")
    start = time.time()
    for index in range(args.train):
        counts, repeats = show(net, parts, images[index], True, args.max_repeats)
        w = matrix(parts, n_input, n)
        th = np.asarray(exc.theta[:]) / b2.mV
        row = dict(
            image=index, spikes=int(counts.sum()), repeats=repeats,
            active=int((counts > 0).sum()), theta_mean=float(th.mean()),
            theta_max=float(th.max()), w_colmax_mean=float(w.max(0).mean()),
            w_frac_above_half=float((w > 0.5).mean()),
            w_frac_zero=float((w == 0).mean()), border=border_neurons(w),
            seconds=time.time() - start,
        )  # fmt: skip
        log.write(json.dumps(row) + "\n")
        log.flush()
        if (index + 1) % args.snapshot_every == 0 or index + 1 == args.train:
            np.save(out / f"weights_{index + 1}.npy", w.astype(np.float32))
            np.save(out / f"theta_{index + 1}.npy", th.astype(np.float32))
    if args.label and args.test:
        exc.learning, parts["syn"].lr = 0.0, 0.0
        labels = np.load(data / "train_labels.npy")[: args.label]
        test_images = np.load(data / "test_images.npy").reshape(-1, 784)
        test_labels = np.load(data / "test_labels.npy")[: args.test]

        def responses(imgs):
            return np.stack(
                [show(net, parts, x, False, args.max_repeats)[0] for x in imgs]
            )

        label_counts = responses(images[: args.label])
        test_counts = responses(test_images[: args.test].astype(np.float64))
        onehot = np.eye(10)[labels]
        per_class = onehot.T @ label_counts / np.maximum(onehot.sum(0)[:, None], 1)
        assign = per_class.argmax(0)
        votes = (
            test_counts @ np.eye(10)[assign] / np.maximum(np.eye(10)[assign].sum(0), 1)
        )
        accuracy = float((votes.argmax(1) == test_labels).mean())
        result = dict(
            brian2_test_accuracy=accuracy, train=args.train, label=args.label,
            test=args.test, test_spikes=float(test_counts.sum(1).mean()),
        )  # fmt: skip
        print(json.dumps(result))
        (out / "accuracy.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
