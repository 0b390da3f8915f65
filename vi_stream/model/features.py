"""Patch features: backbone trunk + aggregation head (torch).

The trunk (:class:`~vi_stream.model.backbone.FeatureExtractor`) runs on the
configured device; on CPU it is traced and frozen so oneDNN fuses conv+bias+
clamp (about 2x faster than eager on this class of machine). The head brings
the tapped blocks to a common stride of 8 px (average-pool the finer ones,
bilinear-upsample the coarser ones), concatenates them and averages each
3x3 neighbourhood, as PatchCore does, so a feature describes a local patch
rather than a single receptive-field centre. An optional fitted projection
(mean-centring + PCA) is applied as a 1x1 convolution.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

import numba
import numpy as np
import torch
import torch.nn.functional as F

from vi_stream.errors import ModelError
from vi_stream.model import aggregate
from vi_stream.model.backbone import FeatureExtractor
from vi_stream.model.config import FEATURE_STRIDE


def resolve_device(device: str | None) -> torch.device:
    name = device or "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"bad device {name!r}: {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"device {name!r} not supported; use 'cpu' or 'cuda[:N]'")
    return dev


class PatchFeatures:
    """Callable turning a batch of float tiles (N, T, T[, C]) into features (N, D, h, w)."""

    def __init__(self, backbone: str, taps: Sequence[int], channels: int, device: str | None = None):
        self.device = resolve_device(device)
        trunk = FeatureExtractor(taps, in_channels=channels, name=backbone)
        for s in trunk.strides:
            if s not in (4, 8, 16, 32):
                raise ModelError(f"tap stride {s} not supported")
        self.strides = trunk.strides
        self.raw_dim = int(sum(trunk.channels))
        self.trunk = trunk.to(self.device).to(memory_format=torch.channels_last)
        self._traced: torch.jit.ScriptModule | None = None
        self._lock = threading.Lock()
        self._scratch = threading.local()
        self.proj_w: torch.Tensor | None = None
        self.proj_b: torch.Tensor | None = None

    # -- projection learnt at fit time
    def set_projection(self, mean: np.ndarray, components: np.ndarray) -> None:
        """features -> (features - mean) @ components.

        Pooling, upsampling and 3x3 averaging are linear (weights summing to
        one), so the projection commutes with them: it is applied per tap
        *before* aggregation, which then runs on D instead of raw_dim channels.
        """
        w = torch.from_numpy(np.ascontiguousarray(components.T, np.float32))  # (D, raw)
        b = -(w @ torch.from_numpy(mean.astype(np.float32)))
        self.proj_w = w[:, :, None, None].to(self.device)
        self.proj_b = b.to(self.device)
        self._tap_w = [aggregate.quad_weights(t.numpy()) for t in torch.split(w, list(self.trunk.channels), dim=1)]
        self._bias = b.numpy()
        self._proj_head = _ProjectedHead(self.proj_w, self.proj_b, self.trunk.channels, self.strides).to(self.device).eval()

    @property
    def dim(self) -> int:
        return self.raw_dim if self.proj_w is None else int(self.proj_w.shape[0])

    # -- stages (kept separate so benchmarks can time the trunk alone)
    def to_tensor(self, tiles: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(tiles)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # NHWC storage == channels_last
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last)

    def trunk_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            if self.device.type != "cpu":
                return list(self.trunk(x))
            if self._traced is None:
                with self._lock:
                    if self._traced is None:
                        traced = torch.jit.trace(self.trunk, (x,), check_trace=False, strict=False)
                        self._traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            return list(self._traced(x))

    def head(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Projected features (N, D, h, w), channels-last (torch; CUDA, and the reference for
        :meth:`projected_chunk`)."""
        if self.proj_w is None:
            return self.raw_head(taps)
        with torch.inference_mode():
            return self._proj_head(*_channels_last(taps))

    def projected_chunk(self, tiles: np.ndarray, step: int, timings: dict | None = None) -> np.ndarray:
        """CPU: projected features (n, D, h, w) of a chunk of tiles, as NCHW numpy; equal to
        ``head`` (which the tests hold it to) and faster on CPU (see :mod:`.aggregate`).

        Each backbone call of ``step`` tiles is followed by the projection of its taps
        (:func:`.aggregate.project`, numba, on the NCHW taps the frozen trunk returns; the
        stride-4 ones 2x2-averaged on the way), adding up per stride. The upsampling of the
        coarser maps and the 3x3 mean run once for the chunk.

        The maps live in per-thread buffers reused from call to call (fresh ones cost a page
        fault per 4 KiB on first write), so the result is valid until the same thread's next
        call."""
        n = len(tiles)
        maps: dict[int, np.ndarray] = {}
        for b in range(0, n, step):
            t1 = time.perf_counter()
            taps = self.trunk_forward(self.to_tensor(tiles[b:b + step]))
            t2 = time.perf_counter()
            h, w = _feature_grid(taps, self.strides)
            written = set()
            for tap, s, wq in zip(taps, self.strides, self._tap_w):
                key = max(s, FEATURE_STRIDE)  # the stride-4 tap is pooled to stride 8 on the way
                if key not in maps:
                    maps[key] = self._buffer(key, (n, self.dim) + ((h, w) if key == FEATURE_STRIDE else tap.shape[2:]))
                aggregate.project(tap.contiguous().numpy(), wq, maps[key][b:b + len(tap)], key in written,
                                  s < FEATURE_STRIDE, numba.get_num_threads())
                written.add(key)
            if timings is not None:
                timings["backbone"] += t2 - t1
                timings["features"] += time.perf_counter() - t2
        t3 = time.perf_counter()
        total = maps.pop(FEATURE_STRIDE, None)
        if total is None:
            total = self._buffer(FEATURE_STRIDE, (n, self.dim, h, w))
            total[:] = 0
        for m in maps.values():
            aggregate.add_resized(total, m, *aggregate.interp_table(m.shape[2], h), *aggregate.interp_table(m.shape[3], w),
                                  numba.get_num_threads())
        aggregate.mean3x3(total, self._bias, total, numba.get_num_threads())
        if timings is not None:
            timings["features"] += time.perf_counter() - t3
        return total

    def _buffer(self, key: int, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's float32 scratch array ``key``, reallocated only to grow."""
        bufs = self._scratch.__dict__.setdefault("bufs", {})
        size = int(np.prod(shape))
        buf = bufs.get(key)
        if buf is None or buf.size < size:
            buf = bufs[key] = np.empty(size, np.float32)
        return buf[:size].reshape(shape)

    def raw_head(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Unprojected aggregated features (what fitting accumulates)."""
        with torch.inference_mode():
            ref = _feature_grid(taps, self.strides)
            parts = []
            for t, s in zip(_channels_last(taps), self.strides):
                if s < FEATURE_STRIDE:
                    t = F.avg_pool2d(t, FEATURE_STRIDE // s)
                elif s > FEATURE_STRIDE:
                    t = F.interpolate(t, size=ref, mode="bilinear", align_corners=False)
                parts.append(t)
            f = torch.cat(parts, 1)
            return F.avg_pool2d(f, 3, 1, 1, count_include_pad=False)

    def __call__(self, tiles: np.ndarray) -> torch.Tensor:
        return self.head(self.trunk_forward(self.to_tensor(tiles)))


class _ProjectedHead(torch.nn.Module):
    """Projection per tap, then the same aggregation as ``raw_head`` (traceable)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        self.strides = tuple(strides)
        splits = torch.split(w, list(channels), dim=1)
        self.convs = torch.nn.ModuleList()
        for i, ws in enumerate(splits):
            conv = torch.nn.Conv2d(ws.shape[1], ws.shape[0], 1, bias=(i == 0))
            with torch.no_grad():
                conv.weight.copy_(ws)
                if i == 0:
                    conv.bias.copy_(b)
            self.convs.append(conv)

    def forward(self, *taps: torch.Tensor) -> torch.Tensor:
        ref = _feature_grid(taps, self.strides)
        total = None
        for t, s, conv in zip(taps, self.strides, self.convs):
            if s < FEATURE_STRIDE:
                y = conv(F.avg_pool2d(t, FEATURE_STRIDE // s))
            elif s > FEATURE_STRIDE:
                y = F.interpolate(conv(t), size=ref, mode="bilinear", align_corners=False)
            else:
                y = conv(t)
            total = y if total is None else total + y
        return F.avg_pool2d(total, 3, 1, 1, count_include_pad=False)


def _feature_grid(taps: Sequence[torch.Tensor], strides: Sequence[int]) -> tuple[int, int]:
    """(h, w) of the stride-8 feature grid: that of the stride-8 tap, else of the finest tap
    brought to stride 8."""
    for t, s in zip(taps, strides):
        if s == FEATURE_STRIDE:
            return tuple(t.shape[-2:])
    return tuple(-(-n * strides[0] // FEATURE_STRIDE) for n in taps[0].shape[-2:])


def _channels_last(taps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The frozen CPU trunk hands back NCHW tensors; pooling, 1x1 convolutions and upsampling
    of these small maps run several times faster channels-last, conversion included."""
    return [t.contiguous(memory_format=torch.channels_last) for t in taps]
