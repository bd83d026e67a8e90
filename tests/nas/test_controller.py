"""Controller: log-prob, entropy and skip penalty against a NumPy re-implementation."""

import jax
import jax.numpy as jnp
import numpy as np

from nas import controller as controller_lib
from nas import search_space as space_lib

# One config and one jitted call for the sampling tests: each compile costs
# seconds on CPU, so sample, score and single rollouts share one graph.
CONFIG = controller_lib.ControllerConfig(
    space_lib.macro_space(4), lstm_size=8, temperature=5.0, op_tanh_reduce=2.5
)
NUM = 8


@jax.jit
def _sample_score_loop(params, key):
    batch = controller_lib.sample(params, CONFIG, key, NUM)
    scored = controller_lib.score(params, CONFIG, batch.arch)
    keys = jax.random.split(key, NUM)
    singles = [controller_lib.rollout(params, CONFIG, keys[i]) for i in (0, 3, 6)]
    return batch, scored, singles


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference(params, config, arch):
    """Per-decision log-softmax by hand (NumPy), teacher-forced on `arch`."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    num_layers = config.space.size
    ops = space_lib.macro_ops(config.space, arch)
    skips = space_lib.macro_skips(config.space, arch)

    def lstm(x, c, h):
        i, f, o, g = np.split(np.concatenate([x, h]) @ p["w_lstm"], 4)
        c = _sigmoid(i) * np.tanh(g) + _sigmoid(f) * c
        return c, _sigmoid(o) * np.tanh(c)

    def squash(x, reduce=1.0):
        if config.temperature is not None:
            x = x / config.temperature
        return config.tanh_constant / reduce * np.tanh(x)

    c = h = np.zeros(config.lstm_size)
    x = p["g_emb"]
    anchors, decisions, penalties = [], [], []
    for layer in range(num_layers):
        c, h = lstm(x, c, h)
        logits = squash(h @ p["w_soft"] + p["b_soft"], config.op_tanh_reduce)
        decisions.append((logits, ops[layer]))
        c, h = lstm(p["w_emb"][ops[layer]], c, h)
        if layer:
            for j in range(layer):
                q = p["v_attn"] @ np.tanh(
                    anchors[j] @ p["w_attn_1"] + h @ p["w_attn_2"]
                )
                logits = squash(np.array([-q, q]))
                decisions.append((logits, skips[layer, j]))
            prob = np.exp(
                _log_softmax(
                    squash(
                        np.stack(
                            [
                                np.array([-q, q])
                                for q in [
                                    p["v_attn"]
                                    @ np.tanh(
                                        anchors[j] @ p["w_attn_1"] + h @ p["w_attn_2"]
                                    )
                                    for j in range(layer)
                                ]
                            ]
                        )
                    )
                )
            )
            target = np.array([1 - config.skip_target, config.skip_target])
            penalties.append((prob * np.log(prob / target)).sum())
            chosen = skips[layer, :layer].astype(float)
            x = chosen @ np.stack(anchors) / (1 + chosen.sum())
        else:
            x = p["g_emb"]
        anchors.append(h)
    log_prob = sum(_log_softmax(lg)[a] for lg, a in decisions)
    entropy = sum(
        -(np.exp(_log_softmax(lg)) * _log_softmax(lg)).sum() for lg, _ in decisions
    )
    return log_prob, entropy, np.mean(penalties)


def _params(seed):
    params = controller_lib.init(jax.random.key(seed), CONFIG)
    params["b_soft"] = jnp.array([0.3, -0.2, 0.0, 0.1, 0.5, -0.4])
    return params


def test_log_prob_entropy_penalty_match_hand_computation():
    params = _params(1)
    rollouts, scored, _ = _sample_score_loop(params, jax.random.key(2))
    for i in range(3):
        arch = np.asarray(rollouts.arch[i])
        log_prob, entropy, penalty = reference(params, CONFIG, arch)
        np.testing.assert_allclose(rollouts.log_prob[i], log_prob, rtol=1e-5)
        np.testing.assert_allclose(rollouts.entropy[i], entropy, rtol=1e-5)
        np.testing.assert_allclose(rollouts.skip_penalty[i], penalty, rtol=1e-5)
        assert rollouts.skip_count[i] == space_lib.macro_skips(CONFIG.space, arch).sum()
    np.testing.assert_allclose(scored.log_prob, rollouts.log_prob, rtol=1e-6)
    np.testing.assert_allclose(scored.entropy, rollouts.entropy, rtol=1e-6)


def test_vmapped_sampling_equals_a_loop_and_archs_are_valid():
    batch, _, singles = _sample_score_loop(_params(0), jax.random.key(3))
    for i, single in zip((0, 3, 6), singles, strict=True):
        np.testing.assert_array_equal(single.arch, batch.arch[i])
        np.testing.assert_allclose(single.log_prob, batch.log_prob[i], rtol=1e-6)
    for arch in np.asarray(batch.arch):
        space_lib.validate(CONFIG.space, arch)
    assert len({tuple(a) for a in np.asarray(batch.arch)}) > 4  # it does sample


def test_official_initialization():
    config = controller_lib.ControllerConfig(
        space_lib.macro_space(3), op_bias_init=(10.0, 10.0, 0.0, 0.0, 0.0, 0.0)
    )
    params = controller_lib.init(jax.random.key(0), config)
    assert params["w_lstm"].shape == (128, 256)  # 64 units, no bias
    assert float(jnp.abs(params["w_lstm"]).max()) <= 0.1
    np.testing.assert_array_equal(params["b_soft"], [10, 10, 0, 0, 0, 0])
