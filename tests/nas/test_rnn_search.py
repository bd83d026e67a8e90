"""nas.rnn_search: shared-weight perplexity, the child optimizer, resumable windows."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nas import rnn_cell, rnn_lm, rnn_search
from nas import search_space as space_lib


def test_shared_ppl_equals_the_standalone_child_on_extracted_weights(key):
    config = rnn_lm.LMConfig(vocab_size=9, hidden=4, num_nodes=4)
    params = jax.tree.map(lambda w: w * 5, rnn_lm.init(key, config))  # nonlinear
    arch = np.asarray(
        space_lib.random_arch(
            jax.random.fold_in(key, 1), space_lib.rnn_space(config.num_nodes)
        )
    )
    stream = np.asarray(jax.random.randint(jax.random.fold_in(key, 2), (41,), 0, 9))
    windows = rnn_lm.windows(stream, 2, 4)
    child = {
        "embedding": params["embedding"],
        "cell": rnn_cell.extract(params["cell"], arch),
    }
    cell = lambda c, *a: rnn_cell.standalone_step(c, arch, *a)
    want = float(np.exp(rnn_lm.evaluate(cell, child, *windows)))
    got = rnn_search.shared_ppl(params, arch, windows)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert 1.0 < got  # a real perplexity, not a constant


def test_child_optimizer_staircase_decay_floor_and_clip():
    config = ml_collections.ConfigDict(
        dict(lr=1.0, lr_decay=0.5, lr_decay_start=2, lr_min=0.2, l2=0.0, grad_clip=10.0)
    )
    optimizer = rnn_search.child_optimizer(config, "", steps_per_epoch=3)
    params = jnp.zeros(1)
    state = optimizer.init(params)
    rates = []
    for _ in range(12):
        updates, state = optimizer.update(jnp.ones(1), state, params)
        rates.append(-float(updates[0]))
    # the official staircase: lr * decay^floor(max(step - start, 0) / epoch),
    # start = 2 epochs: steps 0-8 at lr, 9-11 at 0.5
    want = [1.0] * 9 + [0.5] * 3
    np.testing.assert_allclose(rates, want, rtol=1e-6)
    floor = rnn_search.child_optimizer(config, "", steps_per_epoch=1)
    state = floor.init(params)
    for _ in range(6):  # step 5: 3 drops, 0.125, floored
        updates, state = floor.update(jnp.ones(1), state, params)
    np.testing.assert_allclose(-float(updates[0]), 0.2, rtol=1e-6)
    clipped = rnn_search.child_optimizer(config, "", 3)
    big, _ = clipped.update(jnp.full(1, 100.0), clipped.init(params), params)
    np.testing.assert_allclose(-float(big[0]), 10.0, rtol=1e-6)  # norm clipped to 10


def test_windows_resume_where_they_stopped():
    x = np.arange(12).reshape(3, 2, 2)
    first = rnn_search.Windows(x, x + 1)
    seen = [next(first)["x"][0, 0] for _ in range(4)]
    again = rnn_search.Windows(x, x + 1)
    again.set_state(first.get_state())
    assert seen == [0, 4, 8, 0]  # in order, cycling
    np.testing.assert_array_equal(next(again)["y"], x[1] + 1)
