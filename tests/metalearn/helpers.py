"""Synthetic class-indexed images whose pixels say which class, drawer and
rotation they came from, so episode invariants can be checked exactly."""

import numpy as np

from metalearn import episodes as episodes_lib

NUM_BASE, DRAWERS, SIZE = 6, 20, 16


def marked_images() -> np.ndarray:
    """(6, 20, 16, 16, 1) uint8: pixel (0, 0) = class + 1, (0, 1) = drawer + 101."""
    images = np.zeros((NUM_BASE, DRAWERS, SIZE, SIZE, 1), np.uint8)
    images[:, :, 0, 0, 0] = np.arange(NUM_BASE)[:, None] + 1
    images[:, :, 0, 1, 0] = np.arange(DRAWERS)[None, :] + 101
    return images


def marked_data(rotations: bool) -> episodes_lib.ClassImages:
    return episodes_lib.make_class_images(marked_images(), rotations)


def decode(image: np.ndarray) -> tuple[int, int, int]:
    """(class id incl. rotation, drawer, quarter turns) of one (H, W, 1) image."""
    pixels = np.rint(np.asarray(image)[..., 0] * 255).astype(int)
    rows, cols = np.nonzero((pixels >= 1) & (pixels <= NUM_BASE))
    (row,), (col,) = rows, cols
    corner = {(0, 0): 0, (SIZE - 1, 0): 1, (SIZE - 1, SIZE - 1): 2, (0, SIZE - 1): 3}
    turns = corner[(row, col)]
    base = pixels[row, col] - 1
    drawer = int(pixels[(pixels > 100)][0]) - 101
    return turns * NUM_BASE + base, drawer, turns
