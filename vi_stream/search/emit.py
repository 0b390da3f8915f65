"""The list kernels' inner loops in LLVM IR: one small emitter per kernel on shared helpers.

Every kernel runs the same product: for each step of LIST_WIDTH members (one LLVM vector),
four vector accumulators take ``xs[4t + a] * member[t]`` for every dimension t, one vector
load of the members (widened from float16 where the lists hold half precision) serving
four queries. They differ in how the accumulators start and what becomes of them:

=================  ===================  ==========================================
kernel             accumulators start   then
=================  ===================  ==========================================
min_of_four        the members' |m|^2   per-lane running minimum, reduced at the end
nearest_of_four    the members' |m|^2   the same, with the member index of each minimum
distances_of_four  the members' |m|^2   stored
project_four       ``out`` (float32)    stored back (a small GEMM on float32 planes)
=================  ===================  ==========================================

Written in IR because numba cannot be made to keep these accumulators in vector
registers: as numba loops they live in memory (a load and a store per member and four
dimensions) or, unrolled, in scalar registers, and the scans ran at half the speed. Plain
LLVM vectors, so any CPU numba targets runs them. This leans on numba internals
(``numba.core.cgutils``, the array model); :mod:`vi_stream.search.kernels` falls back to
plain numba loops (:mod:`vi_stream.search.plain`) where they are missing.
"""
from __future__ import annotations

import llvmlite.ir as ir
from numba import types
from numba.core import cgutils

from vi_stream.search.layout import LIST_WIDTH

F32, I32, I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
VEC, IVEC = ir.VectorType(F32, LIST_WIDTH), ir.VectorType(I32, LIST_WIDTH)
FAST = ("fast",)


class _Emitter:
    """What every kernel needs, bound to one builder."""

    def __init__(self, context, builder, sig, args):
        self.c, self.b, self.sig, self.args = context, builder, sig, args

    def data(self, i: int):
        return self.c.make_array(self.sig.args[i])(self.c, self.b, self.args[i]).data

    def splat(self, value, vtype):
        b = self.b
        one = b.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(I32, 0))
        return b.shuffle_vector(one, ir.Constant(vtype, ir.Undefined), ir.Constant(IVEC, [0] * LIST_WIDTH))

    def vec_at(self, data, offset):
        return self.b.bitcast(self.b.gep(data, [offset]), VEC.as_pointer())

    def members(self, vdata, offset, half: bool):
        """LIST_WIDTH members from ``vdata[offset]``: float32, or float16 bits widened."""
        at = self.b.gep(vdata, [offset])
        if not half:
            return self.b.load(self.b.bitcast(at, VEC.as_pointer()), align=4)
        half_vec = ir.VectorType(ir.HalfType(), LIST_WIDTH)
        return self.b.fpext(self.b.load(self.b.bitcast(at, half_vec.as_pointer()), align=2), VEC)

    def steps(self, m):
        """Loop over the steps of LIST_WIDTH members; yields the first member's index j."""
        width = ir.Constant(I64, LIST_WIDTH)
        with cgutils.for_range(self.b, self.b.sdiv(m, width)) as step:
            yield self.b.mul(step.index, width)

    def products(self, acc, vdata, half, base, stride, d, xdata, j) -> None:
        """acc[a] += xs[4t + a] * member(base + t * stride + j), for every dimension t < d."""
        b = self.b
        with cgutils.for_range(b, d) as dim:
            t = dim.index
            v = self.members(vdata, b.add(b.add(base, b.mul(t, stride)), j), half)
            for a in range(4):
                at = b.add(b.mul(t, ir.Constant(I64, 4)), ir.Constant(I64, a))
                x = self.splat(b.load(b.gep(xdata, [at])), VEC)
                b.store(b.fadd(b.load(acc[a]), b.fmul(x, v, flags=FAST), flags=FAST), acc[a])

    def start_at_norms(self, acc, sdata, sbase, j) -> None:
        """Every accumulator starts at the step's members' |m|^2."""
        member_sq = self.b.load(self.vec_at(sdata, self.b.add(sbase, j)), align=4)
        for a in range(4):
            self.b.store(member_sq, acc[a])

    def vectors(self, init, kind=VEC):
        # allocas of whole vectors: LLVM keeps them in registers
        return [cgutils.alloca_once_value(self.b, ir.Constant(kind, init)) for _ in range(4)]

    def reduce(self, v, jv):
        """Fold a vector's lanes to its minimum (and, with ``jv``, that lane's index; ties to the lower)."""
        b = self.b
        half = LIST_WIDTH
        while half > 1:  # fold the upper half of the lanes onto the lower
            half //= 2
            perm = ir.Constant(IVEC, [i + half if i < half else i for i in range(LIST_WIDTH)])
            hv = b.shuffle_vector(v, ir.Constant(VEC, ir.Undefined), perm)
            take = b.fcmp_ordered("<", hv, v, flags=FAST)
            if jv is not None:
                hj = b.shuffle_vector(jv, ir.Constant(IVEC, ir.Undefined), perm)
                take = b.or_(take, b.and_(b.fcmp_ordered("==", hv, v, flags=FAST), b.icmp_signed("<", hj, jv)))
                jv = b.select(take, hj, jv)
            v = b.select(take, hv, v)
        m = b.extract_element(v, ir.Constant(I32, 0))
        return m, (None if jv is None else b.sext(b.extract_element(jv, ir.Constant(I32, 0)), I64))


def _check(sig, i: int, want) -> None:
    if sig.args[i].dtype != want:
        raise TypeError(f"argument {i} must be an array of {want}, got {sig.args[i].dtype}")


def emit_minimum(context, builder, sig, args, with_index: bool):
    """min_of_four / nearest_of_four: (values, base, m, d, xs, sq, sbase) -> four minima (and indices)."""
    e = _Emitter(context, builder, sig, args)
    _check(sig, 0, types.uint16)
    values, base, m, d, xs, sq, sbase = args
    vdata, xdata, sdata = e.data(0), e.data(4), e.data(5)
    best = e.vectors([3e38] * LIST_WIDTH)
    best_j = e.vectors([0] * LIST_WIDTH, IVEC)
    acc = [cgutils.alloca_once(builder, VEC) for _ in range(4)]
    for j in e.steps(m):
        e.start_at_norms(acc, sdata, sbase, j)
        e.products(acc, vdata, True, base, m, d, xdata, j)
        lanes = builder.add(e.splat(builder.trunc(j, I32), IVEC), ir.Constant(IVEC, list(range(LIST_WIDTH))))
        for a in range(4):
            cur, old = builder.load(acc[a]), builder.load(best[a])
            lower = builder.fcmp_ordered("<", cur, old, flags=FAST)
            builder.store(builder.select(lower, cur, old), best[a])
            if with_index:
                builder.store(builder.select(lower, lanes, builder.load(best_j[a])), best_j[a])
    out = [e.reduce(builder.load(best[a]), builder.load(best_j[a]) if with_index else None) for a in range(4)]
    mins = [o[0] for o in out]
    return context.make_tuple(builder, sig.return_type, mins + [o[1] for o in out] if with_index else mins)


def emit_distances(context, builder, sig, args):
    """distances_of_four: (values, base, m, d, xs, sq, sbase, out, o0..o3): every term, stored."""
    e = _Emitter(context, builder, sig, args)
    _check(sig, 0, types.uint16)
    _values, base, m, d, _xs, _sq, sbase, _out = args[:8]
    vdata, xdata, sdata, odata = e.data(0), e.data(4), e.data(5), e.data(7)
    out_at = args[8:12]
    acc = [cgutils.alloca_once(builder, VEC) for _ in range(4)]
    for j in e.steps(m):
        e.start_at_norms(acc, sdata, sbase, j)
        e.products(acc, vdata, True, base, m, d, xdata, j)
        for a in range(4):
            builder.store(builder.load(acc[a]), e.vec_at(odata, builder.add(out_at[a], j)), align=4)
    return context.get_dummy_value()


def emit_projection(context, builder, sig, args):
    """project_four: (values, base, m, d, xs, stride, out, o0..o3): out[o_a + j] += products.
    All four accumulators are loaded before any is stored, so repeated offsets are safe."""
    e = _Emitter(context, builder, sig, args)
    _check(sig, 0, types.float32)
    _values, base, m, d, _xs, stride = args[:6]
    vdata, xdata, odata = e.data(0), e.data(4), e.data(6)
    out_at = args[7:11]
    acc = [cgutils.alloca_once(builder, VEC) for _ in range(4)]
    for j in e.steps(m):
        for a in range(4):
            builder.store(builder.load(e.vec_at(odata, builder.add(out_at[a], j)), align=4), acc[a])
        e.products(acc, vdata, False, base, stride, d, xdata, j)
        for a in range(4):
            builder.store(builder.load(acc[a]), e.vec_at(odata, builder.add(out_at[a], j)), align=4)
    return context.get_dummy_value()
