"""nas.rnn_controller: log-prob by hand, valid samples, REINFORCE learns."""

import jax
import jax.numpy as jnp
import numpy as np

from nas import reinforce
from nas import rnn_controller as ctrl
from nas import search_space as space_lib

N = 5
STEPS = 100


def _config(**kwargs):
    return ctrl.RnnControllerConfig(space_lib.rnn_space(N), lstm_size=8, **kwargs)


def _log_softmax(v):
    v = v - v.max()
    return v - np.log(np.exp(v).sum())


def _reference_log_prob(params, config, arch):
    """The official sampler's decisions, one by one in NumPy (teacher forced)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    sig = lambda v: 1 / (1 + np.exp(-v))

    def lstm(x, c, h):
        i, f, o, g = np.split(np.concatenate([x, h]) @ p["w_lstm"], 4)
        c = sig(i) * np.tanh(g) + sig(f) * c
        return c, sig(o) * np.tanh(c)

    def squash(v):
        return config.tanh_constant * np.tanh(v / config.temperature)

    c = h = np.zeros(config.lstm_size)
    inputs, anchors, total = p["g_emb"], [], 0.0
    for node in range(N):
        c, h = lstm(inputs, c, h)
        anchors.append(h)
        if node > 0:
            prev = arch[2 * node - 1]
            query = [
                np.tanh(a @ p["w_attn_1"] + h @ p["w_attn_2"]) @ p["v_attn"]
                for a in anchors[:-1]
            ]
            logits = squash(np.array(query)) - (node - np.arange(node)) ** 2 / 12
            total += _log_softmax(logits)[prev]
            inputs = anchors[prev] / (0.1 + node - prev)
        else:
            inputs = p["g_emb"]
        c, h = lstm(inputs, c, h)
        func = arch[0] if node == 0 else arch[2 * node]
        total += _log_softmax(squash(h @ p["w_soft"]))[func]
        inputs = p["w_emb"][func]
    return total


def test_log_prob_is_the_sum_of_per_decision_log_softmax(key):
    config = _config()
    params = ctrl.init(key, config)
    params = jax.tree.map(lambda w: w * 10, params)  # non-trivial logits

    @jax.jit  # one compile: sample, then score the sampled archs
    def sample_and_score(key):
        sampled = ctrl.sample(params, config, key, 6)
        return sampled, ctrl.score(params, config, sampled.arch)

    sampled, scored = sample_and_score(key)
    np.testing.assert_allclose(scored.log_prob, sampled.log_prob, rtol=1e-5)
    for arch, log_prob in zip(np.asarray(sampled.arch), scored.log_prob, strict=True):
        want = _reference_log_prob(params, config, arch)
        np.testing.assert_allclose(log_prob, want, rtol=1e-4, atol=1e-5)


def test_every_sample_is_valid_and_every_choice_occurs(key):
    config = _config(tanh_constant=None, temperature=None)
    space = config.space
    params = ctrl.init(key, config)
    rollouts = jax.jit(lambda k: ctrl.sample(params, config, k, 400))(key)
    archs = np.asarray(rollouts.arch)
    for arch in archs:
        space_lib.validate(space, arch)
    for position, limit in enumerate(space.num_choices):
        assert set(archs[:, position]) == set(range(limit)), position
    # uniform-ish init: entropy near the sum of log(choices)
    most = sum(np.log(n) for n in space.num_choices)
    assert 0.8 * most < float(rollouts.entropy.mean()) <= most + 1e-4


def test_reinforce_learns_the_rewarded_activation(key):
    config = ctrl.RnnControllerConfig(space_lib.rnn_space(2), lstm_size=8)
    optimizer = reinforce.make_optimizer(0.1)
    params = ctrl.init(key, config)
    state = reinforce.ControllerState(
        params, optimizer.init(params), jnp.zeros((), jnp.float32)
    )

    def perplexity(archs):  # relu everywhere: perplexity 10, else up to 50
        relu = (archs[:, ::2] == 1).mean(-1)
        return 50.0 - 40.0 * relu

    @jax.jit
    def step(state, key):
        return ctrl.update(
            state,
            key,
            config,
            optimizer,
            perplexity,
            num_samples=16,
            reward_constant=80.0,
            entropy_weight=0.0,
            baseline_decay=0.9,
        )

    ppls = []
    for i in range(STEPS):
        state, metrics = step(state, jax.random.fold_in(key, i))
        ppls.append(float(metrics["controller/valid_ppl"]))
    # mean ppl 50 - 40 * (relu share): 40 at init (share 0.25), < 22 means > 0.7
    assert np.mean(ppls[:3]) > 30 and np.mean(ppls[-5:]) < 22, ppls
