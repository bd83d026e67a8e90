"""Search spaces: official fixed_arc round trips, decoding, validation errors."""

import re

import jax
import numpy as np
import pytest

from nas import search_space as space_lib

# The 24-layer macro architecture of the official scripts/cifar10_macro_final.sh.
OFFICIAL_MACRO_24 = " ".join(
    [
        "0",
        "3 0",
        "0 1 0",
        "2 0 0 1",
        "2 0 0 0 0",
        "3 1 1 0 1 0",
        "2 0 0 0 0 0 1",
        "2 0 1 1 0 1 1 1",
        "1 0 1 1 1 0 1 0 1",
        "0 0 0 0 0 0 0 0 0 0",
        "2 0 0 0 0 0 1 0 0 0 0",
        "0 1 0 0 1 1 0 0 0 0 1 1",
        "2 0 1 0 0 0 0 0 1 0 1 1 0",
        "1 0 0 1 0 0 0 1 1 1 0 1 0 1",
        "0 1 1 0 1 0 1 0 0 0 0 0 1 0 0",
        "2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1",
        "2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0",
        "2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1",
        "3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0",
        "3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1",
        "0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0",
        "3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0",
        "0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0",
        "0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0",
    ]
)


def test_official_macro_arc_round_trips_and_decodes():
    space = space_lib.macro_space(24)
    arch = space_lib.from_fixed_arc(space, OFFICIAL_MACRO_24)
    assert arch.shape == (24 + 24 * 23 // 2,)
    assert space_lib.to_fixed_arc(space, arch) == OFFICIAL_MACRO_24
    ops = space_lib.macro_ops(space, arch)
    np.testing.assert_array_equal(ops[:6], [0, 3, 0, 2, 2, 3])
    skips = space_lib.macro_skips(space, arch)
    np.testing.assert_array_equal(skips[5, :5], [1, 1, 0, 1, 0])
    assert skips[5, 5:].sum() == 0 and np.triu(skips).sum() == 0


def test_small_macro_layout_by_hand():
    space = space_lib.macro_space(3)
    arch = np.array([4, 1, 1, 5, 0, 1])  # op0 | op1 s10 | op2 s20 s21
    np.testing.assert_array_equal(space_lib.macro_ops(space, arch), [4, 1, 5])
    expected = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(space_lib.macro_skips(space, arch), expected)
    traced = space_lib.macro_skips(space, jax.numpy.asarray(arch))
    np.testing.assert_array_equal(traced, expected)


@pytest.mark.parametrize(
    "space",
    [space_lib.macro_space(5), space_lib.micro_space(5), space_lib.rnn_space(12)],
    ids=["macro", "micro", "rnn"],
)
def test_random_archs_are_valid_and_round_trip(space):
    keys = jax.random.split(jax.random.key(0), 50)
    archs = np.asarray(jax.vmap(lambda k: space_lib.random_arch(k, space))(keys))
    for arch in archs:
        text = space_lib.to_fixed_arc(space, arch)
        np.testing.assert_array_equal(space_lib.from_fixed_arc(space, text), arch)
    # every position's full range is reachable (the randint bounds are right)
    assert (archs.max(0) == np.array(space.num_choices) - 1).mean() > 0.9


def test_lengths_match_the_official_layouts():
    assert space_lib.macro_space(12).length == 12 + 66
    assert space_lib.micro_space(5).length == 40  # normal + reduce, 4 per node
    assert space_lib.rnn_space(12).length == 23
    micro = space_lib.micro_space(5)
    assert micro.num_choices[:8] == (2, 5, 2, 5, 3, 5, 3, 5)


@pytest.mark.parametrize(
    "space, arch, message",
    [
        (space_lib.macro_space(3), [0, 1, 2, 0, 1], "has 6 integers"),
        (space_lib.macro_space(3), [0, 1, 2, 0, 1, 1], "position 2 (skip) is 2"),
        (space_lib.macro_space(3), [6, 1, 1, 0, 1, 1], "position 0 (op) is 6"),
        (space_lib.macro_space(3), [0, -1, 1, 0, 1, 1], "must be in"),
        (space_lib.micro_space(2), [2] + [0] * 15, "position 0 (input) is 2"),
        (space_lib.rnn_space(3), [0, 1, 0, 0, 0], "position 1 (input) is 1"),
        (space_lib.macro_space(1), [0.5], "must be integers"),
    ],
)
def test_invalid_archs_raise_clear_errors(space, arch, message):
    with pytest.raises(
        space_lib.ArchitectureError,
        match=re.escape(message),
    ):
        space_lib.validate(space, np.array(arch))


def test_malformed_fixed_arc_string():
    with pytest.raises(space_lib.ArchitectureError, match="space-separated integers"):
        space_lib.from_fixed_arc(space_lib.macro_space(2), "0 1 x")


def test_op_share_counts():
    space = space_lib.macro_space(2)
    share = space_lib.op_share(space, np.array([[0, 5, 1], [5, 5, 0]]))
    assert share["op_share/conv3x3"] == 0.25 and share["op_share/max_pool"] == 0.75
    assert share["op_share/skip_density"] == 0.5


def test_plot_writes_a_png(tmp_path):
    from nas import plot

    space = space_lib.macro_space(24)
    arch = space_lib.from_fixed_arc(space, OFFICIAL_MACRO_24)
    path = plot.plot_macro(space, arch, str(tmp_path / "arch.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
