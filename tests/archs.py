"""Reference architectures the test suite builds itself (torchvision has no CPU wheel for the
pinned torch): small, seeded versions of the networks TinyML engineers quantize.

Each builder returns an eval-mode ``torch.nn.Module`` whose batch-norm statistics are seeded
away from the identity, so that folding them into the convolutions (as every exporter does) is
exercised.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet", "mobilenet_v2", "mobilenet_v3_small"]


def _seed_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2, generator=generator)
            m.running_var.uniform_(0.5, 1.5, generator=generator)
            m.weight.data.uniform_(0.7, 1.3, generator=generator)
            m.bias.data.uniform_(-0.1, 0.1, generator=generator)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expansion, 3×3 depthwise, 1×1 linear projection, and the
    residual Add when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   _conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class _MobileNetV2(nn.Module):
    def __init__(self, blocks: list[tuple[int, int, int, int]], stem: int, head: int,
                 classes: int):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, stem, 3, 2)]
        cin = stem
        for expand, cout, repeats, stride in blocks:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn(cin, head, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(head, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def mobilenet_v2(seed: int = 0, classes: int = 10) -> nn.Module:
    """A MobileNetV2 at width ×0.25 with the stage layout of the paper cut to five stages
    (expansion, channels, repeats, stride): a stride-2 stem, inverted residual blocks with
    depthwise convolutions, ReLU6, residual Adds, global average and a classifier."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _MobileNetV2([(1, 8, 1, 1), (6, 8, 2, 2), (6, 8, 2, 2), (6, 16, 2, 2), (6, 24, 1, 1)],
                         stem=8, head=64, classes=classes)
    _seed_batchnorm(model, generator)
    return model.eval()


class _SqueezeExcite(nn.Module):
    """Channel attention: global average, 1×1 reduce + ReLU, 1×1 expand + HardSigmoid, and the
    broadcast multiply of the block's input by the ``[1, C, 1, 1]`` gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.expand(gate))


class _Bneck(nn.Module):
    """MobileNetV3's block: expansion, k×k depthwise, optional squeeze-excite, projection."""

    def __init__(self, cin: int, k: int, hidden: int, cout: int, se: bool,
                 act: type[nn.Module], stride: int):
        super().__init__()
        layers: list[nn.Module] = [] if hidden == cin else [_conv_bn(cin, hidden, 1, act=act)]
        layers.append(_conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(_SqueezeExcite(hidden, max(8, hidden // 4)))
        layers.append(_conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v3_small(seed: int = 0, classes: int = 10) -> nn.Module:
    """A MobileNetV3-small-like net: HardSwish stem, bneck blocks (3×3 and 5×5 depthwise, ReLU
    and HardSwish, squeeze-excite with HardSigmoid gates, a residual), a 1×1 HardSwish head,
    global average and a two-layer classifier with HardSwish."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hs = nn.Hardswish
    model = nn.Sequential(
        _conv_bn(3, 16, 3, 2, act=hs),
        _Bneck(16, 3, 16, 16, True, nn.ReLU, 2),
        _Bneck(16, 3, 32, 24, False, nn.ReLU, 2),
        _Bneck(24, 3, 48, 24, False, nn.ReLU, 1),
        _Bneck(24, 5, 64, 32, True, hs, 2),
        _conv_bn(32, 96, 1, act=hs),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(96, 64), hs(), nn.Linear(64, classes))
    _seed_batchnorm(model, generator)
    return model.eval()


class UNet(nn.Module):
    """A two-level UNet: Conv+ReLU (the skip), MaxPool, Conv+ReLU, ×2 upsampling (``"resize"``:
    nearest ``Upsample``; ``"convtranspose"``: a 2×2 stride-2 ``ConvTranspose2d``), padded on the
    bottom and right to the skip's size (odd inputs), Concat with the skip, Conv+ReLU, 1×1 head."""

    def __init__(self, upsample: str):
        super().__init__()
        self.enc = nn.Conv2d(1, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 16, 3, padding=1)
        self.up = (nn.ConvTranspose2d(16, 16, 2, stride=2) if upsample == "convtranspose"
                   else nn.Upsample(scale_factor=2, mode="nearest"))
        self.dec = nn.Conv2d(24, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = torch.relu(self.enc(x))
        mid = torch.relu(self.mid(nn.functional.max_pool2d(skip, 2)))
        up = self.up(mid)
        up = nn.functional.pad(up, (0, skip.shape[3] - up.shape[3], 0,
                                    skip.shape[2] - up.shape[2]))
        return self.head(torch.relu(self.dec(torch.cat([skip, up], 1))))
