"""Patch statistics and distances (numba on CPU).

Fitting streams: a running mean/covariance (float64) and a fixed-size uniform
reservoir of patch features (Vitter's algorithm R) are updated batch by batch,
so memory is bounded by ``bank_size`` however many images are given.

Scoring is a two-stage nearest-neighbour search over the reservoir bank,
which is partitioned into K k-means cells (an inverted file):

1. every patch: a two-level tree over the K cell medoids (the 2 nearest
   groups, then their cells) picks a near cell, and the patch is compared
   with every member of it. That distance is to real bank members, so it is
   an upper bound of the true nearest-neighbour distance (and usually equal
   to it).
2. patches whose bound exceeds ``gate``: also every member of the other
   ``nprobe`` nearest cells among the nearest ``2 + nprobe // 2`` groups
   (all groups, i.e. exact, when ``nprobe`` covers every cell).

Any patch whose true NN distance is above the gate is therefore refined; the
gate is calibrated below the decision threshold, so masks and verdicts are
those of the full search, at a few percent of the cost of exhaustive search.
"""
from __future__ import annotations

from typing import NamedTuple

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..threads import share as _share


# ---------------------------------------------------------------- streaming fit
class Moments:
    """Streaming mean and covariance (float64, batch-merged, numerically stable)."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros((dim, dim), np.float64)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc
        delta = mb - self.mean
        n = self.n + nb
        self.m2 += m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.mean += delta * (nb / n)
        self.n = n

    def covariance(self) -> np.ndarray:
        return self.m2 / max(self.n - 1, 1)


class Reservoir:
    """Uniform sample of at most ``capacity`` rows from a stream (algorithm R)."""

    def __init__(self, capacity: int, dim: int, seed: int = 0):
        self.data = np.empty((capacity, dim), np.float32)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    @property
    def filled(self) -> np.ndarray:
        return self.data[: min(self.seen, len(self.data))]

    def update(self, x: np.ndarray) -> None:
        cap = len(self.data)
        nb = len(x)
        start = self.seen
        take = max(0, min(nb, cap - start))
        if take:
            self.data[start:start + take] = x[:take]
        if nb > take:
            idx = np.arange(start + take, start + nb)  # global index of each remaining row
            j = (self.rng.random(len(idx)) * (idx + 1)).astype(np.int64)
            keep = j < cap
            # later rows overwrite earlier ones at the same slot, as in the sequential algorithm
            self.data[j[keep]] = x[take:][keep]
        self.seen += nb


# ---------------------------------------------------------------- kernels
@numba.njit(cache=True, parallel=True, fastmath=True)
def nearest_centre(x, c, c_sq):  # pragma: no cover - compiled
    """Index and squared distance of the nearest row of ``c`` for every row of ``x``."""
    n, d = x.shape
    k = c.shape[0]
    idx = np.empty(n, np.int64)
    dist = np.empty(n, np.float32)
    for i in numba.prange(n):
        best = np.float32(np.inf)
        bi = 0
        for j in range(k):
            dot = np.float32(0.0)
            for t in range(d):
                dot += x[i, t] * c[j, t]
            v = c_sq[j] - 2 * dot
            if v < best:
                best = v
                bi = j
        xs = np.float32(0.0)
        for t in range(d):
            xs += x[i, t] * x[i, t]
        idx[i] = bi
        dist[i] = max(best + xs, np.float32(0.0))
    return idx, dist


@numba.njit(cache=True, parallel=True)
def _centre_sums(x, assign, k, nthreads):  # pragma: no cover - compiled
    n, d = x.shape
    sums = np.zeros((nthreads, k, d), np.float64)
    counts = np.zeros((nthreads, k), np.int64)
    for t in numba.prange(nthreads):
        lo, hi = _share(t, nthreads, n)
        for i in range(lo, hi):
            a = assign[i]
            counts[t, a] += 1
            for j in range(d):
                sums[t, a, j] += x[i, j]
    return sums.sum(axis=0), counts.sum(axis=0)


def kmeans(x: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k distinct random rows (empty cells re-seeded at the farthest points);
    returns (centres, assignment)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    centres = x[rng.choice(n, k, replace=False)].astype(np.float32).copy()
    assign = np.zeros(n, np.int64)
    for _ in range(iterations):
        assign, _d = nearest_centre(x, centres, (centres * centres).sum(1))
        sums, counts = _centre_sums(x, assign, k, numba.get_num_threads())
        empty = counts == 0
        new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if empty.any():  # re-seed empty cells at the farthest points
            _a, dist = nearest_centre(x, new, (new * new).sum(1))
            far = np.argsort(dist)[::-1][: int(empty.sum())]
            new[empty] = x[far]
        moved = float(np.abs(new - centres).max())
        centres = new
        if moved < 1e-4:
            break
    assign, _d = nearest_centre(x, centres, (centres * centres).sum(1))
    return centres, assign


LIST_WIDTH = 32  # members per step of the list kernel (one LLVM vector); lists are padded to it


class Lists(NamedTuple):
    """Row lists (the bank's cells, or the medoid tree's groups) laid out for
    :func:`scan_lists`: each list transposed (dimension-major, members along the fast axis),
    stored as IEEE half precision and padded to a multiple of LIST_WIDTH members (|row|^2 =
    1e30, so padding never wins). Member j of list L, dimension t, is the float16 whose bits
    are ``values[dims * start[L] + t * count[L] + j]``; its |row|^2 (of the float16 values, in
    float32) is ``sq[start[L] + j]``. The kernels widen members to float32 as they load them,
    so a distance is exact (to float32 rounding) for the member as stored.

    Half precision halves the bytes the search reads. The bank is 17 MB in float32 at the
    default size, which the backbone pushes out of cache between images: at 768x768 the search
    took 4.5-4.7 ms after it and 3.7-4.0 ms when repeated at once, and 4.2-4.5 ms after it in
    float16. Rounding moves a member by at most 2^-11 of its largest coordinate (0.035 at most,
    0.007 typically, on the benchmark's model, whose threshold is 20.7); see
    :func:`half_precision`."""

    values: np.ndarray   # uint16 (float16 bits), flat
    sq: np.ndarray       # float32, per padded slot
    start: np.ndarray    # int64, first slot of each list
    count: np.ndarray    # int64, padded length of each list


def half_precision(rows: np.ndarray) -> np.ndarray:
    """``rows`` rounded to float16 precision (as float32): what :class:`Lists` stores. Values
    beyond float16's range (65504) are an error, not infinities."""
    rows = np.asarray(rows, np.float32)
    if rows.size and not np.abs(rows).max() <= 65504.0:
        raise ValueError("rows exceed float16 range (|x| > 65504) or are not finite")
    return rows.astype(np.float16).astype(np.float32)


def list_layout(rows: np.ndarray, start: np.ndarray, end: np.ndarray) -> Lists:
    """:class:`Lists` for the row ranges ``rows[start[L]:end[L]]``."""
    dims = rows.shape[1]
    real = (end - start).astype(np.int64)
    count = (real + LIST_WIDTH - 1) // LIST_WIDTH * LIST_WIDTH
    slot_end = np.cumsum(count)
    slot_start = slot_end - count
    total = int(slot_end[-1]) if len(count) else 0
    values = np.zeros(total * dims, np.float16)
    sq = np.full(total, np.float32(1e30), np.float32)
    rows = half_precision(rows)
    for lst in range(len(count)):
        block = rows[start[lst]:end[lst]]
        s0, m = int(slot_start[lst]), int(count[lst])
        values[dims * s0:dims * (s0 + m)].reshape(dims, m)[:, :len(block)] = block.T
        sq[s0:s0 + len(block)] = np.einsum("ij,ij->i", block, block)
    return Lists(values.view(np.uint16), sq, slot_start.astype(np.int64), count)


@numba.njit(cache=True)
def by_list(pair_list, n_lists, run):  # pragma: no cover - compiled
    """Counting sort of (query, list) pairs by list. Returns the order and the boundaries of
    runs of at most ``run`` consecutive sorted pairs on the same list, which
    :func:`scan_lists` serves together (4: one pass over the list)."""
    n = pair_list.shape[0]
    count = np.zeros(n_lists + 1, np.int64)
    for p in range(n):
        count[pair_list[p] + 1] += 1
    for lst in range(n_lists):
        count[lst + 1] += count[lst]
    order = np.empty(n, np.int64)
    for p in range(n):
        lst = pair_list[p]
        order[count[lst]] = p
        count[lst] += 1
    runs = np.empty(n + 1, np.int64)
    nr = 0
    p = 0
    while p < n:
        runs[nr] = p
        nr += 1
        lst = pair_list[order[p]]
        e = min(p + run, n)
        p += 1
        while p < e and pair_list[order[p]] == lst:
            p += 1
    runs[nr] = n
    return order, runs[:nr + 1]


def _emit_four_queries(context, builder, sig, args, mode):
    """LLVM IR of :func:`_min_of_four` (``mode`` "min"), :func:`_nearest_of_four` ("arg"),
    :func:`_distances_of_four` ("store") and :func:`_project_four` ("add").

    For each step of LIST_WIDTH members: four vector accumulators start at the members'
    |m|^2 and take ``xs[4t + a] * member[t]`` for every dimension t (one vector load of the
    members, widened from float16, serves the four queries); then they are stored ("store"),
    or fold into a running per-lane minimum (with "arg", also the member index of each lane's
    minimum) that is reduced across lanes at the end, ties going to the lower index.

    "add" is the same product as a small GEMM on float32 planes: the members are pixels, the
    dimensions channels ``stride`` apart, and accumulator a starts from ``out`` at ``o<a>`` and
    is stored back there. All four are loaded before any is stored, so repeated offsets are
    safe.
    """
    values, base, m, d, xs = args[:5]
    vdata = context.make_array(sig.args[0])(context, builder, values).data
    xdata = context.make_array(sig.args[4])(context, builder, xs).data
    f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
    vec, ivec = ir.VectorType(f32, LIST_WIDTH), ir.VectorType(i32, LIST_WIDTH)
    if mode == "add":
        stride, out_at = args[5], args[7:11]
        odata = context.make_array(sig.args[6])(context, builder, args[6]).data
        want = types.float32
    else:
        sq, sbase, stride = args[5], args[6], m
        sdata = context.make_array(sig.args[5])(context, builder, sq).data
        if mode == "store":
            odata = context.make_array(sig.args[7])(context, builder, args[7]).data
            out_at = args[8:12]
        want = types.uint16  # members as stored (float16 bits)
    if sig.args[0].dtype != want:
        raise TypeError(f"values must be {want} here (mode {mode}), got {sig.args[0].dtype}")
    fast = ("fast",)

    def splat(value, vtype):
        one = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, ir.Constant(vtype, ir.Undefined), ir.Constant(ivec, [0] * LIST_WIDTH))

    def vec_at(data, offset):
        return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())

    def member(offset):
        at = builder.gep(vdata, [offset])
        if want == types.float32:
            return builder.load(builder.bitcast(at, vec.as_pointer()), align=4)
        half_vec = ir.VectorType(ir.HalfType(), LIST_WIDTH)
        return builder.fpext(builder.load(builder.bitcast(at, half_vec.as_pointer()), align=2), vec)

    # allocas of whole vectors: LLVM keeps them in registers
    best = [cgutils.alloca_once_value(builder, ir.Constant(vec, [3e38] * LIST_WIDTH)) for _ in range(4)]
    best_j = [cgutils.alloca_once_value(builder, ir.Constant(ivec, [0] * LIST_WIDTH)) for _ in range(4)]
    acc = [cgutils.alloca_once(builder, vec) for _ in range(4)]
    width = ir.Constant(i64, LIST_WIDTH)
    with cgutils.for_range(builder, builder.sdiv(m, width)) as step:
        j = builder.mul(step.index, width)
        if mode == "add":
            for a in range(4):
                builder.store(builder.load(vec_at(odata, builder.add(out_at[a], j)), align=4), acc[a])
        else:
            member_sq = builder.load(vec_at(sdata, builder.add(sbase, j)), align=4)
            for a in range(4):
                builder.store(member_sq, acc[a])
        with cgutils.for_range(builder, d) as dim:
            t = dim.index
            v = member(builder.add(builder.add(base, builder.mul(t, stride)), j))
            for a in range(4):
                x = splat(builder.load(builder.gep(xdata, [builder.add(builder.mul(t, ir.Constant(i64, 4)),
                                                                       ir.Constant(i64, a))])), vec)
                builder.store(builder.fadd(builder.load(acc[a]), builder.fmul(x, v, flags=fast), flags=fast), acc[a])
        if mode in ("store", "add"):
            for a in range(4):
                builder.store(builder.load(acc[a]), vec_at(odata, builder.add(out_at[a], j)), align=4)
        else:
            lanes = builder.add(splat(builder.trunc(j, i32), ivec), ir.Constant(ivec, list(range(LIST_WIDTH))))
            for a in range(4):
                cur, old = builder.load(acc[a]), builder.load(best[a])
                lower = builder.fcmp_ordered("<", cur, old, flags=fast)
                builder.store(builder.select(lower, cur, old), best[a])
                if mode == "arg":
                    builder.store(builder.select(lower, lanes, builder.load(best_j[a])), best_j[a])
    if mode in ("store", "add"):
        return context.get_dummy_value()
    mins, args_ = [], []
    for a in range(4):
        v, jv = builder.load(best[a]), builder.load(best_j[a])
        half = LIST_WIDTH
        while half > 1:  # fold the upper half of the lanes onto the lower
            half //= 2
            perm = ir.Constant(ivec, [i + half if i < half else i for i in range(LIST_WIDTH)])
            hv = builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), perm)
            take = builder.fcmp_ordered("<", hv, v, flags=fast)
            if mode == "arg":
                hj = builder.shuffle_vector(jv, ir.Constant(ivec, ir.Undefined), perm)
                take = builder.or_(take, builder.and_(builder.fcmp_ordered("==", hv, v, flags=fast),
                                                      builder.icmp_signed("<", hj, jv)))
                jv = builder.select(take, hj, jv)
            v = builder.select(take, hv, v)
        mins.append(builder.extract_element(v, ir.Constant(i32, 0)))
        args_.append(builder.sext(builder.extract_element(jv, ir.Constant(i32, 0)), i64))
    return context.make_tuple(builder, sig.return_type, mins + args_ if mode == "arg" else mins)


@intrinsic
def _min_of_four(typingctx, values, base, m, d, xs, sq, sbase):
    """For a = 0..3: min over j < m of ``sq[sbase + j] + sum_t xs[4t + a] * values[base + t*m + j]``
    (``values`` float16 bits, as :class:`Lists` holds them),
    ``m`` a multiple of LIST_WIDTH: with xs = -2q, |m|^2 - 2 q.m of four queries against a
    dimension-major list, its nearest member's squared distance less |q|^2.

    Written in LLVM IR because numba cannot be made to keep these accumulators in vector
    registers: as numba loops they live in memory (a load and a store per member and four
    dimensions) or, unrolled, in scalar registers. Measured at 768x768, every patch against
    its own cell, 2 threads: 1.24 -> 0.61-0.66 ms. Plain LLVM vectors, so any CPU numba
    targets runs it (AVX-512 registers here, split by LLVM where narrower)."""
    sig = types.UniTuple(types.float32, 4)(values, base, m, d, xs, sq, sbase)
    return sig, lambda context, builder, s, args: _emit_four_queries(context, builder, s, args, "min")


@intrinsic
def _nearest_of_four(typingctx, values, base, m, d, xs, sq, sbase):
    """:func:`_min_of_four` and the index j of each minimum (four float32, then four int64)."""
    sig = types.Tuple((types.float32,) * 4 + (types.int64,) * 4)(values, base, m, d, xs, sq, sbase)
    return sig, lambda context, builder, s, args: _emit_four_queries(context, builder, s, args, "arg")


@intrinsic
def _distances_of_four(typingctx, values, base, m, d, xs, sq, sbase, out, o0, o1, o2, o3):
    """The terms :func:`_min_of_four` minimises, all of them: query a's m values go to the flat
    float32 array ``out`` from offset ``o<a>``."""
    sig = types.void(values, base, m, d, xs, sq, sbase, out, o0, o1, o2, o3)
    return sig, lambda context, builder, s, args: _emit_four_queries(context, builder, s, args, "store")


@intrinsic
def _project_four(typingctx, values, base, m, d, xs, stride, out, o0, o1, o2, o3):
    """For a = 0..3 and j < m (a multiple of LIST_WIDTH): ``out[o<a> + j] += sum_t xs[4t + a] *
    values[base + t * stride + j]``, float32: four output channels of a 1x1 convolution
    (xs: their weights, channel-major) over LIST_WIDTH pixels at a time."""
    sig = types.void(values, base, m, d, xs, stride, out, o0, o1, o2, o3)
    return sig, lambda context, builder, s, args: _emit_four_queries(context, builder, s, args, "add")


@numba.njit(cache=True, inline="always")
def _load_quad(q, pair_q, quads, k, xs):  # pragma: no cover - compiled
    """Quad k's four pairs (a short quad repeats its last: the same answer, written twice) and
    their queries; fills ``xs`` with -2q of the four, dimension by dimension, as the list
    kernel takes them."""
    p0 = quads[k]
    last = quads[k + 1] - 1
    p1 = min(p0 + 1, last)
    p2 = min(p0 + 2, last)
    p3 = min(p0 + 3, last)
    i0, i1, i2, i3 = pair_q[p0], pair_q[p1], pair_q[p2], pair_q[p3]
    m2 = np.float32(-2.0)
    for t in range(q.shape[1]):
        xs[4 * t] = m2 * q[i0, t]
        xs[4 * t + 1] = m2 * q[i1, t]
        xs[4 * t + 2] = m2 * q[i2, t]
        xs[4 * t + 3] = m2 * q[i3, t]
    return p0, p1, p2, p3, i0, i1, i2, i3


@numba.njit(cache=True, parallel=True, fastmath=True)
def scan_lists(q, q_sq, pair_q, pair_l, quads, values, sq, start, count, out_d, out_j,
               nt):  # pragma: no cover - compiled
    """Squared distance ``out_d[p]`` from query ``pair_q[p]`` to the nearest member of list
    ``pair_l[p]``, for pairs sorted by list; also the member's position in the list
    (``out_j[p]``) when ``out_j`` is not empty.

    Up to four queries on one list share each pass over it (``quads``: runs of 4, see
    :func:`by_list`), LIST_WIDTH members at a time in vector registers (:func:`_min_of_four`).
    Measured on the 2-core VM, one thread: 0.6 ns per member and query (with index 0.7),
    against 1.4-1.5 ns for the same loops written in numba and 2.9-3.3 ns for a dot product per
    pair over the row-major bank (which spends its time summing across lanes).
    """
    d = q.shape[1]
    zero = np.float32(0.0)
    with_arg = out_j.shape[0] > 0
    for th in numba.prange(nt):
        xs = np.empty(4 * d, np.float32)
        lo, hi = _share(th, nt, quads.shape[0] - 1)
        for k in range(lo, hi):
            p0, p1, p2, p3, i0, i1, i2, i3 = _load_quad(q, pair_q, quads, k, xs)
            lst = pair_l[p0]
            s0 = start[lst]
            if with_arg:
                r0, r1, r2, r3, j0, j1, j2, j3 = _nearest_of_four(values, d * s0, count[lst], d, xs, sq, s0)
                out_j[p0] = j0
                out_j[p1] = j1
                out_j[p2] = j2
                out_j[p3] = j3
            else:
                r0, r1, r2, r3 = _min_of_four(values, d * s0, count[lst], d, xs, sq, s0)
            # (3e38, a finite "none", for an empty list: fastmath assumes no infinities)
            out_d[p0] = max(r0 + q_sq[i0], zero)
            out_d[p1] = max(r1 + q_sq[i1], zero)
            out_d[p2] = max(r2 + q_sq[i2], zero)
            out_d[p3] = max(r3 + q_sq[i3], zero)


def scan_pairs(q: np.ndarray, q_sq: np.ndarray, pair_q: np.ndarray, pair_l: np.ndarray, lists: Lists,
               with_arg: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scan_lists` for unsorted (query, list) pairs. Returns the pairs sorted by list
    (queries, lists) with each one's squared distance and, with ``with_arg``, member position."""
    order, quads = by_list(pair_l, len(lists.start), 4)
    pq, pl = pair_q[order], pair_l[order]
    out = np.empty(len(pq), np.float32)
    out_j = np.empty(len(pq) if with_arg else 0, np.int64)
    if len(pq):
        scan_lists(q, q_sq, pq, pl, quads, *lists, out, out_j, numba.get_num_threads())
    return pq, pl, out, out_j


def nearest_in_lists(q: np.ndarray, q_sq: np.ndarray, pair_q: np.ndarray, pair_l: np.ndarray,
                     lists: Lists, d_sq: np.ndarray) -> None:
    """For each (query, list) pair, lower ``d_sq[query]`` to the squared distance of the list's
    nearest member if that is smaller (a query may come in several pairs)."""
    pq, _pl, out, _j = scan_pairs(q, q_sq, pair_q, pair_l, lists)
    min_into(d_sq, pq, out)


@numba.njit(cache=True)
def min_into(d_sq, pair_q, pair_d):  # pragma: no cover - compiled
    """d_sq[pair_q[p]] = min(d_sq[pair_q[p]], pair_d[p]) for every pair."""
    for p in range(pair_q.shape[0]):
        i = pair_q[p]
        if pair_d[p] < d_sq[i]:
            d_sq[i] = pair_d[p]


@numba.njit(cache=True, parallel=True, fastmath=True)
def two_nearest_groups(g_score, nt):  # pragma: no cover - compiled
    """The two best-ranked groups of every query (``g_score``: groups x queries, see
    :func:`group_scores`), as rows of (query, group) pairs: the second is -1 when there is only
    one group. Each thread runs along its queries in SIMD lanes, group by group, with selects
    for branches (a branch per query and group cost 0.24 ms at 768x768, this 0.11)."""
    g, n = g_score.shape
    out = np.empty((n, 2), np.int64)
    for th in numba.prange(nt):
        lo, hi = _share(th, nt, n)
        gd0 = np.full(hi - lo, np.float32(3e38), np.float32)
        gd1 = np.full(hi - lo, np.float32(3e38), np.float32)
        gi0 = np.full(hi - lo, -1, np.int32)
        gi1 = np.full(hi - lo, -1, np.int32)
        for j in range(g):
            row = g_score[j]
            jj = np.int32(j)
            for i in range(hi - lo):
                v = row[lo + i]
                d0 = gd0[i]
                d1 = gd1[i]
                first = v < d0
                gi1[i] = gi0[i] if first else (jj if v < d1 else gi1[i])
                gd1[i] = d0 if first else min(v, d1)
                gi0[i] = jj if first else gi0[i]
                gd0[i] = min(v, d0)
        for i in range(hi - lo):
            out[lo + i, 0] = gi0[i]
            out[lo + i, 1] = gi1[i]
    return out


@numba.njit(cache=True)
def best_of_pairs(n, pair_q, pair_d, pair_cell):  # pragma: no cover - compiled
    """Each query's nearest cell over its (query, cell) pairs and the squared distance."""
    cell = np.zeros(n, np.int64)
    d_sq = np.full(n, np.float32(3e38), np.float32)
    for p in range(pair_q.shape[0]):
        i = pair_q[p]
        if pair_d[p] < d_sq[i]:
            d_sq[i] = pair_d[p]
            cell[i] = pair_cell[p]
    return cell, d_sq


class Tree(NamedTuple):
    """The medoid tree's second level for the kernels: the medoids group by group as
    :class:`Lists`, the cell of each of its slots (plus one spare entry), and each group's
    real number of medoids."""

    groups: Lists
    slot_cell: np.ndarray  # int64
    size: np.ndarray       # int64


def medoid_tree(medoids: np.ndarray, assign: np.ndarray, n_groups: int) -> Tree:
    """:class:`Tree` of ``medoids`` (one per cell) grouped by ``assign``."""
    order = np.argsort(assign, kind="stable")
    size = np.bincount(assign, minlength=n_groups).astype(np.int64)
    end = np.cumsum(size)
    groups = list_layout(medoids[order], end - size, end)
    slot_cell = np.zeros(len(groups.sq) + 1, np.int64)
    for g in range(n_groups):
        slot_cell[groups.start[g]:groups.start[g] + size[g]] = order[end[g] - size[g]:end[g]]
    return Tree(groups, slot_cell, size)


def nearest_cell_tree(q: np.ndarray, q_sq: np.ndarray, g_score: np.ndarray, tree: Tree
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest medoid through a two-level tree: the 2 nearest groups (``g_score[i, j]`` ranks
    group j for query i: see :func:`group_scores`), then all their medoids, scanned as lists.
    Returns each query's cell and squared distance to that cell's medoid.

    Approximate (a cell outside the probed groups can be nearer), but the result is always a
    real cell, so its members still bound the true NN distance from above; patches above the
    gate are searched exactly later. (A query whose groups are both empty keeps cell 0 at
    distance 3e38: the padding's 1e30 never wins, nor does the spare slot.)
    """
    n = len(q)
    pairs = two_nearest_groups(g_score, numba.get_num_threads()).ravel()
    pair_q = np.repeat(np.arange(n, dtype=np.int64), 2)
    keep = pairs >= 0
    pq, pg, d_sq, pos = scan_pairs(q, q_sq, pair_q[keep], pairs[keep], tree.groups, with_arg=True)
    return best_of_pairs(n, pq, d_sq, tree.slot_cell[tree.groups.start[pg] + pos])


@numba.njit(cache=True, fastmath=True, inline="always")
def _insert(bd, bi, v, j):  # pragma: no cover - compiled
    """Insert (v, j) into the ascending top list (bd, bi) if v beats its last entry."""
    k = bd.shape[0]
    if v >= bd[k - 1]:
        return
    p = k - 1
    while p > 0 and bd[p - 1] > v:
        bd[p] = bd[p - 1]
        bi[p] = bi[p - 1]
        p -= 1
    bd[p] = v
    bi[p] = j


@numba.njit(cache=True, parallel=True)
def nearest_groups(g_score, rows, n_groups, nt):  # pragma: no cover - compiled
    """The ``n_groups`` best-ranked groups of each of the query rows ``rows``, best first
    (-1 where there are fewer groups)."""
    out = np.full((rows.shape[0], n_groups), -1, np.int64)
    for th in numba.prange(nt):
        gd = np.empty(n_groups, np.float32)
        lo, hi = _share(th, nt, rows.shape[0])
        gi = np.empty(n_groups, np.int64)
        for r in range(lo, hi):
            gd[:] = np.float32(3e38)
            gi[:] = -1
            for j in range(g_score.shape[0]):
                _insert(gd, gi, g_score[j, rows[r]], j)
            for e in range(n_groups):
                out[r, e] = gi[e]
    return out


@numba.njit(cache=True, parallel=True, fastmath=True)
def list_distances(q, pair_q, pair_l, pair_at, quads, values, sq, start, count, out,
                   nt):  # pragma: no cover - compiled
    """|m|^2 - 2 q.m for every member m of list ``pair_l[p]`` and query ``pair_q[p]`` (pairs
    sorted by list, ``quads`` as for :func:`scan_lists`), written to ``out`` from ``pair_at[p]``."""
    d = q.shape[1]
    for th in numba.prange(nt):
        xs = np.empty(4 * d, np.float32)
        lo, hi = _share(th, nt, quads.shape[0] - 1)
        for k in range(lo, hi):
            p0, p1, p2, p3, _i0, _i1, _i2, _i3 = _load_quad(q, pair_q, quads, k, xs)
            lst = pair_l[p0]
            s0 = start[lst]
            _distances_of_four(values, d * s0, count[lst], d, xs, sq, s0, out,
                               pair_at[p0], pair_at[p1], pair_at[p2], pair_at[p3])


@numba.njit(cache=True, parallel=True, fastmath=True)
def top_k_cells(dist, pair_at, groups, size, start, slot_cell, k, nt):  # pragma: no cover - compiled
    """Per query row r, the ``k`` cells whose medoids have the smallest ``dist`` among the
    real medoids of its groups (row r's group s has its distances from ``pair_at[r * n_groups
    + s]``), nearest first; -1 where fewer exist. Ranking a row's groups together, rather than
    each (row, group) pair on its own, skips most candidates after the first group."""
    n_rows, n_groups = groups.shape
    out = np.full((n_rows, k), -1, np.int64)
    for th in numba.prange(nt):
        bd = np.empty(k, np.float32)
        bp = np.empty(k, np.int64)
        lo, hi = _share(th, nt, n_rows)
        for r in range(lo, hi):
            bd[:] = np.float32(3e38)
            bp[:] = -1
            for s in range(n_groups):
                g = groups[r, s]
                if g < 0:
                    break
                at = pair_at[r * n_groups + s]
                for j in range(size[g]):
                    _insert(bd, bp, dist[at + j], start[g] + j)
            for e in range(k):
                if bp[e] >= 0:
                    out[r, e] = slot_cell[bp[e]]
    return out


def nearest_k_tree(q: np.ndarray, rows: np.ndarray, g_score: np.ndarray, tree: Tree, k: int, n_groups: int
                   ) -> np.ndarray:
    """For the query rows ``rows``: the ``k`` nearest medoids among the cells of the
    ``n_groups`` nearest groups of the medoid tree, nearest first (-1 where fewer exist).
    With ``n_groups`` = all groups this is the exact k nearest."""
    nt = numba.get_num_threads()
    groups = nearest_groups(g_score, rows, n_groups, nt)
    pair_g = groups.ravel()
    keep = np.flatnonzero(pair_g >= 0)
    length = tree.groups.count[pair_g[keep]]
    pair_at = np.zeros(len(pair_g), np.int64)
    pair_at[keep] = np.cumsum(length) - length  # each pair's distances, packed
    order, quads = by_list(pair_g[keep], len(tree.size), 4)
    pairs = keep[order]
    dist = np.empty(int(length.sum()), np.float32)
    if len(pairs):
        list_distances(q, rows[pairs // n_groups], pair_g[pairs], pair_at[pairs], quads, *tree.groups, dist, nt)
    return top_k_cells(dist, pair_at, groups, tree.size, tree.groups.start, tree.slot_cell, k, nt)


def group_scores(q: np.ndarray, centres: np.ndarray, centres_sq: np.ndarray) -> np.ndarray:
    """|c_j|^2 - 2 q_i.c_j for every group centre j (rows) and query i (columns): one BLAS
    GEMM (through torch, whose thread pool the backbone already uses) instead of a dot product
    per pair in numba, which for these 32-long rows spends more time summing across SIMD lanes
    than multiplying. Queries along rows suit :func:`two_nearest_groups`."""
    import torch

    return torch.addmm(torch.from_numpy(centres_sq)[:, None], torch.from_numpy(centres), torch.from_numpy(q).T,
                       alpha=-2.0).numpy()


@numba.njit(cache=True, parallel=True, fastmath=True)
def row_sq(x):  # pragma: no cover - compiled
    """|x_i|^2 of each row (float32; 5x faster than ``np.einsum`` for the search's 32-long rows)."""
    out = np.empty(x.shape[0], np.float32)
    for i in numba.prange(x.shape[0]):
        acc = np.float32(0.0)
        for t in range(x.shape[1]):
            acc += x[i, t] * x[i, t]
        out[i] = acc
    return out


@numba.njit(cache=True)
def rows_above(d_sq, gate_sq):  # pragma: no cover - compiled
    count = 0
    for i in range(d_sq.shape[0]):
        if d_sq[i] > gate_sq:
            count += 1
    rows = np.empty(count, np.int64)
    c = 0
    for i in range(d_sq.shape[0]):
        if d_sq[i] > gate_sq:
            rows[c] = i
            c += 1
    return rows


def exact_nn_distance(q: np.ndarray, bank: np.ndarray, max_block: int = 1 << 25) -> np.ndarray:
    """Exhaustive nearest-neighbour distance: the reference our index is held to
    (PatchCore without its coreset approximation). Brute force via BLAS."""
    import torch

    b = torch.from_numpy(np.ascontiguousarray(bank, np.float32))
    b_sq = (b * b).sum(1)
    chunk = max(1, max_block // max(1, len(bank)))  # bounds the distance block to ~128 MB
    out = []
    for i in range(0, len(q), chunk):
        x = torch.from_numpy(np.ascontiguousarray(q[i:i + chunk], np.float32))
        d = (x * x).sum(1, keepdim=True) - 2 * x @ b.T + b_sq
        out.append(d.amin(1).clamp_min(0).sqrt())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
