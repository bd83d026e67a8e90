"""shared.draws: a flat draw reshaped is the very draw of the shape."""

import jax
import numpy as np

from shared import draws


def test_flat_draws_are_the_same_numbers():
    key = jax.random.key(4)
    for sampler, kwargs in [
        (jax.random.gumbel, {}),
        (jax.random.bernoulli, {"p": 0.3}),
    ]:
        want = sampler(key, shape=(3, 2, 5), **kwargs)
        got = draws.flat(sampler, key, (3, 2, 5), **kwargs)
        assert got.shape == (3, 2, 5)
        np.testing.assert_array_equal(got, want)
