r"""3x3 'SAME' convolutions by Winograd minimal filtering, as batched matmuls.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016,
arXiv:1509.09308, Section 4. Winograd's minimal filtering F(m, r) computes m
outputs of an r-tap correlation with m + r - 1 multiplications instead of
m * r. Nested with itself it gives F(m x m, r x r) on an (m + r - 1)^2 input
tile `d` and a 3x3 filter `g` (their Eq. 8):

    Y = A^T [ (G g G^T) * (B^T d B) ] A,

`*` elementwise. For F(2x2, 3x3) (Eq. 7, tiles 4x4, stride 2):

    B^T = [[1, 0,-1, 0],      G = [[  1,   0,   0],      A^T = [[1, 1, 1, 0],
           [0, 1, 1, 0],           [1/2, 1/2, 1/2],             [0, 1,-1,-1]]
           [0,-1, 1, 0],           [1/2,-1/2, 1/2],
           [0, 1, 0,-1]]           [  0,   0,   1]]

and F(4x4, 3x3) uses 6x6 tiles (`F4X4`). Summed over input channels, the
elementwise product becomes, for each of the (m + r - 1)^2 tile positions
(xi, nu), one matmul (Section 4.1, Eq. 12):

    M[xi, nu] = V[xi, nu] @ U[xi, nu],   V: (tiles, C_in),  U: (C_in, C_out),

so a convolution is 16 (or 36) independent matmuls -- one batched einsum --
between cheap linear transforms, with 2.25x (or 4x) fewer multiplications than
the direct convolution. The transforms are constant linear maps, so
`jax.grad` (and MAML's grad of grad) runs through them as transposed
transforms and transposed einsums.

Odd sizes are padded to whole tiles and cropped. F(4x4, 3x3) has larger
transform constants and loses more float32 precision: max |error| against
`lax.conv` on Conv-4 features 1.2e-5 vs 6e-6 for F(2x2, 3x3).

Measured on this 2-core CPU (XLA:CPU, loaded machine, `benchmarks/
metalearn_conv.py` and a per-layer script): on Conv-4's 14x14x64 layer at
batch 16, forward+backward took 9-14 ms vs 20-21 ms for `lax.conv`; on the
7x7 layer about the same, on the 3x3 layer 3x slower (transform overhead),
so `embeddings` uses it only on maps of at least 8x8. F(4x4, 3x3) on layers
2-4 was the slowest (199 / 166 images/s at batch 16 / 80, vs 418 / 272 for
F(2x2, 3x3) and 488 / 333 for `lax.conv`, all with an earlier strided-slice
input transform). The input transform now takes plain slices of a
(tiles, m) reshape: the transpose of a strided slice (an interior pad) made
the backward pass slow; with it Conv-4 ran 511 vs 424 images/s at batch 16.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Transform(NamedTuple):
    """The matrices of F(m x m, 3x3): B^T (t, t), G (t, 3), A^T (m, t), t = m+2."""

    m: int
    b_t: np.ndarray
    g: np.ndarray
    a_t: np.ndarray


F2X2 = Transform(
    2,
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32),
)

F4X4 = Transform(
    4,
    np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        np.float32,
    ),
    np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        np.float32,
    ),
    np.array(
        [
            [1, 1, 1, 1, 1, 0],
            [0, 1, -1, 2, -2, 0],
            [0, 1, 1, 4, 4, 0],
            [0, 1, -1, 8, -8, 1],
        ],
        np.float32,
    ),
)

TRANSFORMS = {"winograd": F2X2, "winograd4": F4X4}


def _combine(parts: list[jax.Array], matrix: np.ndarray) -> list[jax.Array]:
    """Rows of `matrix @ parts` as sums of the parts (zeros and ones skipped,
    so XLA fuses them into a few elementwise passes)."""
    out = []
    for row in matrix:
        total = None
        for coef, part in zip(row, parts, strict=True):
            if coef == 0:
                continue
            term = part if coef == 1 else (-part if coef == -1 else part * coef)
            total = term if total is None else total + term
        out.append(total)
    return out


def transform_filter(kernel: jax.Array, transform: Transform = F2X2) -> jax.Array:
    """G g G^T for every (C_in, C_out) pair.

    Args:
      kernel: (3, 3, C_in, C_out), HWIO.

    Returns:
      (t*t, C_in, C_out), t = m + 2.
    """
    g = jnp.asarray(transform.g)
    u = jnp.einsum("ai,ijcd,bj->abcd", g, kernel, g)
    t = transform.g.shape[0]
    return u.reshape(t * t, *kernel.shape[2:])


def transform_input(x: jax.Array, transform: Transform = F2X2) -> jax.Array:
    """B^T d B for every input tile of the 'SAME'-padded image.

    Args:
      x: (N, H, W, C).

    Returns:
      (t*t, N, ceil(H/m), ceil(W/m), C).
    """
    m, t = transform.m, transform.b_t.shape[0]
    n, h, w, c = x.shape
    tiles_h, tiles_w = math.ceil(h / m), math.ceil(w / m)
    # SAME pads 1 each side; then up to whole tiles (tile i covers rows m*i .. m*i+t-1)
    x = jnp.pad(
        x, ((0, 0), (1, m * tiles_h + m - 1 - h), (1, m * tiles_w + m - 1 - w), (0, 0))
    )
    # tile i covers padded rows m*i .. m*i + t - 1 and t <= 2m: as blocks of m
    # rows, row k of every tile is block i + k // m, offset k % m. Plain slices
    # of a reshape (not strided slices): their transposes are plain pads.
    blocks = x.reshape(n, tiles_h + 1, m, tiles_w + 1, m, c)
    rows = [blocks[:, k // m : k // m + tiles_h, k % m] for k in range(t)]
    rows = _combine(rows, transform.b_t)  # B^T d: t of (N, th, tw + 1, m, C)
    out = []
    for row in rows:
        cols = [row[:, :, k // m : k // m + tiles_w, k % m] for k in range(t)]
        out.extend(_combine(cols, transform.b_t))  # (B^T d) B
    return jnp.stack(out)


def inverse_transform(
    m_tiles: jax.Array, out_h: int, out_w: int, transform: Transform = F2X2
) -> jax.Array:
    """A^T M A, tiles laid back into the image and cropped.

    Args:
      m_tiles: (t*t, N, tiles_h, tiles_w, C).

    Returns:
      (N, out_h, out_w, C).
    """
    m, t = transform.m, transform.b_t.shape[0]
    _, n, tiles_h, tiles_w, c = m_tiles.shape
    grid = m_tiles.reshape(t, t, n, tiles_h, tiles_w, c)
    rows = _combine(list(grid), transform.a_t)  # A^T M: m of (t, N, th, tw, C)
    y = jnp.stack([jnp.stack(_combine(list(r), transform.a_t)) for r in rows])
    # y[r, s, n, i, j, c] is output pixel (m*i + r, m*j + s)
    y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, m * tiles_h, m * tiles_w, c)
    return y[:, :out_h, :out_w]


def conv3x3(x: jax.Array, kernel: jax.Array, transform: Transform = F2X2) -> jax.Array:
    """3x3 stride-1 'SAME' convolution (cross-correlation, as `lax.conv`).

    Args:
      x: (N, H, W, C_in).
      kernel: (3, 3, C_in, C_out), HWIO.
      transform: `F2X2` or `F4X4`.

    Returns:
      (N, H, W, C_out), equal to `lax.conv_general_dilated(x, kernel, (1, 1),
      'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` up to rounding.
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(
            f"conv3x3 needs a (3, 3, C_in, C_out) kernel, got {kernel.shape}"
        )
    v = transform_input(x, transform)
    u = transform_filter(kernel, transform)
    tt, n, th, tw, c = v.shape
    m_tiles = jnp.einsum("tpc,tcd->tpd", v.reshape(tt, n * th * tw, c), u)
    m_tiles = m_tiles.reshape(tt, n, th, tw, kernel.shape[-1])
    return inverse_transform(m_tiles, x.shape[1], x.shape[2], transform)


def conv3x3_patches(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 'SAME' convolution as 9 shifted copies times a (9*C_in, C_out)
    matmul: for few input channels (Conv-4's first layer, C_in = 1).

    Args:
      x: (N, H, W, C_in); kernel: (3, 3, C_in, C_out).

    Returns:
      (N, H, W, C_out).
    """
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=-1
    )
    return patches @ kernel.reshape(9 * c, -1)
