"""The list kernels as numba intrinsics over the IR of :mod:`vi_stream.search.emit`."""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from vi_stream.search import emit


@intrinsic
def min_of_four(typingctx, values, base, m, d, xs, sq, sbase):
    """For a = 0..3: min over j < m of ``sq[sbase + j] + sum_t xs[4t + a] * values[base + t*m + j]``
    (``values`` float16 bits, as :class:`~vi_stream.search.layout.Lists` holds them, ``m`` a
    multiple of LIST_WIDTH): with xs = -2q, |m|^2 - 2 q.m of four queries against a
    dimension-major list, its nearest member's squared distance less |q|^2."""
    sig = types.UniTuple(types.float32, 4)(values, base, m, d, xs, sq, sbase)
    return sig, lambda context, builder, s, args: emit.emit_minimum(context, builder, s, args, False)


@intrinsic
def nearest_of_four(typingctx, values, base, m, d, xs, sq, sbase):
    """:func:`min_of_four` and the index j of each minimum (four float32, then four int64)."""
    sig = types.Tuple((types.float32,) * 4 + (types.int64,) * 4)(values, base, m, d, xs, sq, sbase)
    return sig, lambda context, builder, s, args: emit.emit_minimum(context, builder, s, args, True)


@intrinsic
def distances_of_four(typingctx, values, base, m, d, xs, sq, sbase, out, o0, o1, o2, o3):
    """The terms :func:`min_of_four` minimises, all of them: query a's m values go to the flat
    float32 array ``out`` from offset ``o<a>``."""
    sig = types.void(values, base, m, d, xs, sq, sbase, out, o0, o1, o2, o3)
    return sig, lambda context, builder, s, args: emit.emit_distances(context, builder, s, args)


@intrinsic
def project_four(typingctx, values, base, m, d, xs, stride, out, o0, o1, o2, o3):
    """For a = 0..3 and j < m (a multiple of LIST_WIDTH): ``out[o<a> + j] += sum_t xs[4t + a] *
    values[base + t * stride + j]``, float32: four output channels of a 1x1 convolution
    (xs: their weights, channel-major) over LIST_WIDTH pixels at a time."""
    sig = types.void(values, base, m, d, xs, stride, out, o0, o1, o2, o3)
    return sig, lambda context, builder, s, args: emit.emit_projection(context, builder, s, args)
