"""The patch index: a bank of normal patch features and its two-stage search.

See :mod:`vi_stream.search` for the algorithm. On CUDA the search is an
exhaustive ``torch.cdist`` over the bank in chunks (exact, and fast there).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vi_stream.errors import ModelError
from vi_stream import search
from vi_stream.model import stats


@dataclass
class PatchIndex:
    bank: np.ndarray        # (M, D) float32 at float16 precision, rows grouped by cell
    centres: np.ndarray     # (K, D) float32 k-means centres (pick the lists to search)
    medoids: np.ndarray     # (K, D) float32 bank rows nearest to each centre (the upper bound)
    list_start: np.ndarray  # (K,) int64
    list_end: np.ndarray    # (K,) int64
    nprobe: int = 4
    gate: float = 0.0       # refine patches whose bound exceeds this (0 = refine all)
    labels: np.ndarray | None = field(default=None, repr=False)   # each row's label (build's; not in a file)

    @classmethod
    def build(cls, bank: np.ndarray, cells: int, nprobe: int, seed: int = 0,
              labels: np.ndarray | None = None) -> "PatchIndex":
        """The index of ``bank``; ``labels`` (one per row, e.g. its image's fold) are kept with the rows
        for :meth:`without` (in memory only: a model file does not keep them)."""
        bank = np.ascontiguousarray(bank, np.float32)
        centres, assign = stats.kmeans(bank, cells, seed=seed)
        order = np.argsort(assign, kind="stable")
        bank = np.ascontiguousarray(bank[order])
        counts = np.bincount(assign[order], minlength=len(centres))
        index = cls._on_cells(bank, centres, counts, nprobe)
        index.labels = None if labels is None else np.asarray(labels)[order]
        return index

    @classmethod
    def _on_cells(cls, bank: np.ndarray, centres: np.ndarray, counts: np.ndarray, nprobe: int) -> "PatchIndex":
        """The index of ``bank``, whose rows are grouped by cell, ``counts`` of them in each of ``centres``."""
        k = len(centres)
        list_end = np.cumsum(counts).astype(np.int64)
        list_start = (list_end - counts).astype(np.int64)
        medoids = np.empty_like(centres)
        for j in range(k):
            if counts[j] == 0:
                medoids[j] = bank[stats.nearest_centre(centres[j:j + 1], bank, (bank * bank).sum(1))[0][0]]
                continue
            members = bank[list_start[j]:list_end[j]]
            idx, _ = stats.nearest_centre(centres[j:j + 1], members, (members * members).sum(1))
            medoids[j] = members[idx[0]]
        return cls(bank, centres, medoids, list_start, list_end, min(nprobe, k))

    def without(self, label: int) -> "PatchIndex":
        """This index less the rows labelled ``label`` (:meth:`build`'s labels), on the same cells: the
        bank a fold's images are scored against, out of fold (model/calibration.py). Its gate is 0."""
        if self.labels is None:
            raise ValueError("this index keeps no labels (a fitted model's index does, a loaded one not)")
        keep = self.labels != label
        cell_of_row = np.repeat(np.arange(len(self.centres)), self.list_end - self.list_start)
        counts = np.bincount(cell_of_row[keep], minlength=len(self.centres))
        return self._on_cells(np.ascontiguousarray(self.bank[keep]), self.centres, counts, self.nprobe)

    def __post_init__(self) -> None:
        # The search reads members in half precision (search.Lists); the bank is held at that
        # precision too, so the distances are exact for ``bank`` (and the CUDA search agrees).
        try:
            self.bank = search.half_precision(self.bank)
            self.medoids = search.half_precision(self.medoids)
        except ValueError as err:
            raise ModelError(f"patch bank: {err}") from err
        # Two-level tree over the medoids for the every-patch stage; deterministic, so it is
        # rebuilt on load rather than stored.
        k = len(self.medoids)
        groups = max(1, int(round(np.sqrt(k))))
        gc, gassign = stats.kmeans(np.ascontiguousarray(self.medoids), groups, iterations=30, seed=1)
        # the medoids group by group, dimension-major: a group is scanned like a cell
        self.tree = search.medoid_tree(np.ascontiguousarray(self.medoids), gassign, len(gc))
        self.group_centres = np.ascontiguousarray(gc, np.float32)
        self.group_centres_sq = np.einsum("ij,ij->i", gc, gc).astype(np.float32)
        # Refined patches take their nprobe cells from the nearest few groups, not all K medoids
        # (1/8 of the cells at the defaults); with nprobe >= K every group is scanned (exact).
        self._probe_groups = len(gc) if self.nprobe >= k else min(len(gc), 2 + self.nprobe // 2)
        self._cells = search.list_layout(self.bank, self.list_start, self.list_end)

    @property
    def dim(self) -> int:
        return int(self.bank.shape[1])

    def distance(self, q: np.ndarray, gate: float | None = None, stats_out: dict | None = None) -> np.ndarray:
        """Nearest-neighbour distance of each row of ``q`` (refined above ``gate``)."""
        q = np.ascontiguousarray(q, np.float32)
        g = self.gate if gate is None else gate
        n = len(q)
        q_sq = search.row_sq(q)
        # Every patch: a near cell through the medoid tree, then all of that cell's members
        # (an upper bound of the true NN distance, usually equal to it).
        g_score = search.group_scores(q, self.group_centres, self.group_centres_sq)
        cell, d_sq = search.nearest_cell_tree(q, q_sq, g_score, self.tree)
        search.nearest_in_lists(q, q_sq, np.arange(n, dtype=np.int64), cell, self._cells, d_sq)
        rows = search.rows_above(d_sq, np.float32(g) ** 2) if self.nprobe > 1 else cell[:0]
        if len(rows):
            # Above the gate: the nprobe nearest cells within the nearest groups of the tree.
            cand = search.nearest_k_tree(q, rows, g_score, self.tree, self.nprobe, self._probe_groups)
            new = (cand >= 0) & (cand != cell[rows][:, None])  # the own cell is already searched
            search.nearest_in_lists(q, q_sq, np.repeat(rows, cand.shape[1])[new.ravel()], cand[new], self._cells, d_sq)
        if stats_out is not None:
            stats_out["refined"] = stats_out.get("refined", 0) + len(rows)
            stats_out["patches"] = stats_out.get("patches", 0) + len(q)
        return np.sqrt(d_sq)

    def distance_torch(self, q: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Exhaustive search on a torch device (used on CUDA)."""
        bank = getattr(self, "_bank_t", None)
        if bank is None or bank.device != q.device:
            bank = torch.from_numpy(self.bank).to(q.device)
            self._bank_t = bank
        out = [torch.cdist(q[i:i + chunk], bank).amin(dim=1) for i in range(0, len(q), chunk)]
        return torch.cat(out) if out else q.new_zeros(0)
