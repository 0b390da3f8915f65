"""Nearest-neighbour search of patch features over the bank (CPU; numba).

The bank is partitioned into k-means cells (an inverted file); the search has two stages:

1. every patch: a two-level tree over the cell medoids (:mod:`.tree`: the 2 nearest groups,
   then their medoids) picks a near cell, and the patch is compared with every member of it
   (:mod:`.scan`). That distance is to real bank members, so it bounds the true
   nearest-neighbour distance from above (and usually equals it).
2. patches whose bound exceeds the gate: also every member of the ``nprobe`` nearest cells
   among the nearest groups (all groups, i.e. exact, when ``nprobe`` covers every cell).

Any patch whose true distance is above the gate is therefore refined; the gate sits below
the decision threshold, so masks and verdicts are those of the full search. Lists are held
dimension-major in half precision (:mod:`.layout`); the inner loops are LLVM IR
(:mod:`.emit`) or, where that cannot be built, plain numba (:mod:`.plain`), chosen in
:mod:`.kernels`. ``bench/search.py`` measures this against faiss-cpu. May import only the base
modules (``threads``): the model calls it, it knows nothing of models.
"""
from vi_stream.folders import ensure_numba_cache

ensure_numba_cache()   # before any kernel module: an install numba cannot write to (vi_stream.folders)

from vi_stream.search.exact import exact_nn_distance  # noqa: E402
from vi_stream.search.kernels import BACKEND
from vi_stream.search.layout import LIST_WIDTH, Lists, by_list, half_precision, list_layout
from vi_stream.search.scan import nearest_in_lists, row_sq, rows_above, scan_pairs
from vi_stream.search.tree import Tree, group_scores, medoid_tree, nearest_cell_tree, nearest_k_tree, two_nearest_groups

__all__ = ["BACKEND", "LIST_WIDTH", "Lists", "Tree", "by_list", "exact_nn_distance", "group_scores",
           "half_precision", "list_layout", "medoid_tree", "nearest_cell_tree", "nearest_in_lists",
           "nearest_k_tree", "row_sq", "rows_above", "scan_pairs", "two_nearest_groups"]
