r"""Conv-4's 3x3 convolutions and 2x2 max-pools in shapes XLA:CPU runs well.

A 3x3 'SAME' convolution as matmuls. The textbook im2col lowering
(Chellapilla, Puri & Simard 2006, "High Performance Convolutional Neural
Networks for Document Processing") writes 9 shifted copies of the input side
by side, (pixels, 9 * C_in), times a (9 * C_in, C_out) matrix. Here only the
3 taps of each row are copied: the row patches (pixels, 3 * C_in) times a
(3 * C_in, 3 * C_out) matrix whose column block i is kernel row i give each
pixel's contribution to the output rows above, at and below it, and the
three blocks, shifted by one row, are summed (`_row_conv`): the same
multiply-adds on a third of the patch memory, and a matmul of 192 x 192
instead of 576 x 64 for Conv-4. Its backward (`conv3x3_backward`) shifts the
output gradient the other way, then runs two matmuls (the weight gradient,
row patches^T x that gradient, and the row patches' gradient) and folds the
latter back by 3 shifted sums; autodiff of `conv3x3` gives the same
operations, and MAML's grad of grad differentiates those matmuls again, so
every order of derivative stays a plain matmul. On Conv-4's 14x14 layer (80
images of 64 channels in 16-image blocks, forward + backward in a
`lax.scan`, Eigen dots, median of 12) the row taps took 36.5 ms against 51.8
for 9-tap im2col, 8.5 vs 11.8 on the 7x7 layer. XLA:CPU's own convolution
reaches about half the GFLOP/s of its matmuls here (53 vs 90-110 on this
2-core CPU), and its weight gradient of a 1-channel input (Conv-4's first
layer) is 4x slower than the patches matmul.

The patch matrix of a large map does not stay in cache, so `conv3x3`
multiplies it in blocks of about `BLOCK_ROWS` output pixels (shared/
PERF-NOTES.md: cache blocking matters more than anything else on this CPU).

`max_pool_2x2` is the reshape-and-max pool with a hand-written backward: the
forward also records each window's first maximum (row-major, int8), and the
backward is one select of the broadcast output gradient. Ties (common in
Omniglot's blank background) send the whole gradient to the first maximum,
as PyTorch's `MaxPool2d` does, where `jnp.max`'s gradient splits it equally:
both are subgradients, and the weight gradient of a tie between identical
patches is the same either way. XLA's derivative of the 6-d `max` reduction
took 3x longer on Conv-4's first map (80 x 28 x 28 x 64: 12.6-14.1 ms; a
first-maximum mask, an earlier form of this backward, 4.1 ms); counting ties
for an equal split made the hand-written one nearly as slow again (8.3 ms).
The backward is linear in the output gradient, so second-order MAML
differentiates it again (through the mask: zero, as `max`'s almost
everywhere).

Measured on this 2-core CPU (one 80-image episode's forward + backward, XLA
profiler): the first layer's autodiff weight gradient transposed the whole
64 x 62,720 output gradient (40 ms; `thin_conv3x3` avoids it), and one
un-blocked 9-tap patches matmul on the 14x14 layer ran 100 vs 65 ms for
16-image blocks. Whole-step numbers: README.md, "Speed and memory".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# output pixels per patches matmul: 16 images of Conv-4's 14x14 map (one
# ProtoNet episode's gradient: 151-156 ms with blocks of 1,568-3,136 pixels,
# 172 ms with 6,272, 209 ms unblocked; measured with 9-tap im2col, not
# re-tuned for the row taps)
BLOCK_ROWS = 16 * 14 * 14
THIN_CHANNELS = 8  # inputs with fewer channels are never split into blocks


def _row_patches(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, 3 * C): each pixel's row of 3 'SAME' taps
    (left, centre, right; zeros past the edges), ordered (column, channel)."""
    return jnp.concatenate([_shift(x, j - 1, axis=2) for j in range(3)], axis=-1)


def _row_matrix(kernel: jax.Array) -> jax.Array:
    """(3, 3, C_in, C_out) HWIO -> (3 * C_in, 3 * C_out): kernel row i is
    column block i, its (column, channel) rows matching `_row_patches`."""
    c_in, c_out = kernel.shape[2:]
    rows = [kernel[i].reshape(3 * c_in, c_out) for i in range(3)]
    return jnp.concatenate(rows, axis=1)


def _shift(x: jax.Array, offset: int, axis: int) -> jax.Array:
    """`y` with `y[..., k, ...] = x[..., k + offset, ...]` along `axis`, zero
    where that falls outside (offset -1, 0 or 1)."""
    if offset == 0:
        return x
    size = x.shape[axis]
    zero = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    if offset > 0:
        return jnp.concatenate(
            [jax.lax.slice_in_dim(x, 1, size, axis=axis), zero], axis
        )
    return jnp.concatenate(
        [zero, jax.lax.slice_in_dim(x, 0, size - 1, axis=axis)], axis
    )


def _row_conv(x: jax.Array, matrix: jax.Array, c_out: int) -> jax.Array:
    """The row-tap convolution of the module docstring: one matmul of the
    row patches by `_row_matrix(kernel)`, then each kernel row's outputs
    shifted to the output row they belong to and summed."""
    y = _row_patches(x) @ matrix
    return sum(
        _shift(y[..., i * c_out : (i + 1) * c_out], i - 1, axis=1) for i in range(3)
    )


def conv3x3(x: jax.Array, kernel: jax.Array, block_rows: int = BLOCK_ROWS):
    """3x3 stride-1 'SAME' convolution (cross-correlation, as `lax.conv`).

    Args:
      x: (N, H, W, C_in).
      kernel: (3, 3, C_in, C_out), HWIO.
      block_rows: output pixels per matmul; the batch is split into blocks of
        `max(1, block_rows // (H * W))` images (0 = one matmul). Inputs with
        fewer than `THIN_CHANNELS` channels go to `thin_conv3x3` unsplit.

    Returns:
      (N, H, W, C_out), equal to `lax.conv_general_dilated(x, kernel, (1, 1),
      'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` up to rounding.
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(
            f"conv3x3 needs a (3, 3, C_in, C_out) kernel, got {kernel.shape}"
        )
    n, h, w, c = x.shape
    if c < THIN_CHANNELS:
        return thin_conv3x3(x, kernel)
    c_out = kernel.shape[-1]
    matrix = _row_matrix(kernel)
    images = block_images(n, h, w, block_rows)
    if images >= n:
        return _row_conv(x, matrix, c_out)
    # unrolled in the graph: convolutions in lax.map bodies ran 5-30x slower
    return jnp.concatenate(
        [_row_conv(x[i : i + images], matrix, c_out) for i in range(0, n, images)]
    )


def conv3x3_backward(x, kernel, grad, block_rows: int = BLOCK_ROWS):
    """(dL/dx, dL/dkernel) of `conv3x3(x, kernel, block_rows)` for the
    output gradient `grad`, each block as the forward split it (so XLA
    shares the forward's row patches): the transposes of `_row_conv`'s
    shifts give each kernel row's output gradient, then two matmuls (the
    weight gradient and the row patches' gradient) and the row patches'
    transpose (3 shifted sums)."""
    n, h, w, c_in = x.shape
    if c_in < THIN_CHANNELS:
        return _thin_backward((x, kernel), grad)
    c_out = kernel.shape[-1]
    matrix = _row_matrix(kernel)
    images = block_images(n, h, w, block_rows)
    d_matrix = jnp.zeros_like(matrix)
    pieces = []
    for start in range(0, n, images):
        part, g = x[start : start + images], grad[start : start + images]
        g_rows = jnp.concatenate([_shift(g, 1 - i, axis=1) for i in range(3)], -1)
        g_rows = g_rows.reshape(-1, 3 * c_out)
        d_matrix = d_matrix + _row_patches(part).reshape(-1, 3 * c_in).T @ g_rows
        d_patches = (g_rows @ matrix.T).reshape(*part.shape[:3], 3 * c_in)
        pieces.append(
            sum(
                _shift(d_patches[..., j * c_in : (j + 1) * c_in], 1 - j, axis=2)
                for j in range(3)
            )
        )
    dx = pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces)
    d_kernel = jnp.stack(
        [
            d_matrix[:, i * c_out : (i + 1) * c_out].reshape(3, c_in, c_out)
            for i in range(3)
        ]
    )
    return dx, d_kernel


def block_images(n: int, h: int, w: int, block_rows: int) -> int:
    """Images per patches matmul for `block_rows` output pixels (0 = all `n`).
    `conv3x3_backward` splits the same way, so XLA shares the forward's
    patches with the weight gradient."""
    return max(1, block_rows // (h * w)) if block_rows > 0 else n


@jax.custom_vjp
def thin_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv3x3` of an input with few channels (Conv-4's first layer), one
    matmul, with the weight gradient as (patches^T) x (output gradient).

    Its patches are small (9 * C_in columns), so they are not split into
    blocks (concatenating 20 blocks of the 80 x 28 x 28 x 64 output cost
    16 ms). Left to autodiff, the weight gradient contracts the pixel axis of
    both operands and XLA transposes the large output gradient for it (a
    64 x 62,720 copy fused with the pool's backward: 40 ms per episode);
    building the patches already transposed, (9 * C_in, pixels), makes that
    matmul canonical.
    """
    # the forward as 9 * C_in broadcast multiply-adds, one fused loop over
    # the output (a 9-column matmul took 12 ms on 80 x 28 x 28 x 64, XLA's
    # convolution 18 ms)
    _, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(
        padded[:, i : i + h, j : j + w, k, None] * kernel[i, j, k]
        for i in range(3)
        for j in range(3)
        for k in range(c)
    )


def _thin_forward(x, kernel):
    return thin_conv3x3(x, kernel), (x, kernel)


def _thin_backward(residuals, grad):
    x, kernel = residuals
    n, h, w, c = x.shape
    out = kernel.shape[-1]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # (9, C_in, pixels): the patches transposed, one shifted copy per tap
    patches_t = jnp.stack(
        [
            jnp.moveaxis(padded[:, i : i + h, j : j + w], -1, 0).reshape(c, -1)
            for i in range(3)
            for j in range(3)
        ]
    ).reshape(9 * c, -1)
    grad_flat = grad.reshape(-1, out)
    grad_kernel = (patches_t @ grad_flat).reshape(kernel.shape)
    # input gradient: output gradient x W^T, folded back into the image
    # (col2im); unused for images, which XLA then drops
    taps = (grad_flat @ kernel.reshape(9 * c, out).T).reshape(n, h, w, 3, 3, c)
    return col2im(taps), grad_kernel


def col2im(taps: jax.Array) -> jax.Array:
    """(N, H, W, 3, 3, C) gradients of each pixel's 3x3 'SAME' patch ->
    (N, H, W, C) input gradient: each tap shifted back onto the pixel it
    read, summed (the transpose of the 9-tap patches)."""
    padded = sum(
        jnp.pad(taps[:, :, :, i, j], ((0, 0), (i, 2 - i), (j, 2 - j), (0, 0)))
        for i in range(3)
        for j in range(3)
    )
    return padded[:, 1:-1, 1:-1]


thin_conv3x3.defvjp(_thin_forward, _thin_backward)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool of (N, H, W, C) with even H and W, with the backward of
    the module docstring (the gradient to each window's first maximum)."""
    return _pool_forward(x)[0]


def _pool_forward(x):
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"max_pool_2x2 needs even sizes, got {x.shape}")
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c)
    pooled = windows.max(axis=(2, 4))
    # the first maximum's position in the window, row-major (0..3), from
    # plain slices: elementwise ops on the pooled shape, which XLA fuses
    first = jnp.full(pooled.shape, 3, jnp.int8)
    for position in (2, 1, 0):
        row, col = divmod(position, 2)
        first = jnp.where(windows[:, :, row, :, col] == pooled, position, first)
    return pooled, first.astype(jnp.int8)


def _pool_backward(first, grad):
    n, h2, w2, c = grad.shape
    position = 2 * jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 2)
    position = position + jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 4)
    chosen = position == first[:, :, None, :, None, :]
    grad_x = jnp.where(chosen, grad[:, :, None, :, None, :], 0.0)
    return (grad_x.reshape(n, 2 * h2, 2 * w2, c),)


max_pool_2x2.defvjp(_pool_forward, _pool_backward)
