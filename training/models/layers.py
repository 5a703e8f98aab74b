"""Building blocks shared by backbones and heads.

Align-corners policy (the same everywhere in segrt): every bilinear resize uses ``align_corners=False``,
as MMSegmentation 1.x does for its PSPNet/FCN configs. Heads keep the flag as an attribute so that an imported
checkpoint trained with ``align_corners=True`` can say so, but nothing in this package defaults to ``True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN_CORNERS = False
BN_EPS = 1e-5  # MMSeg / torch default


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class ConvModule(nn.Module):
    """Conv2d + optional BatchNorm2d + optional activation, with mmcv's state-dict names ``conv.*`` and ``bn.*``.

    Matches mmcv's ``ConvModule``: with ``norm=True`` (``norm_cfg=dict(type='BN')``) the conv has no bias
    (mmcv's ``bias='auto'``) and the norm is called ``bn``; with ``norm=False`` (``norm_cfg=None``) the conv has a
    bias and there is no ``bn``. ``act`` is ``"relu"`` (``True``), ``"relu6"`` or ``None``/``False`` (linear).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: bool | str | None = True,
    ) -> None:
        super().__init__()
        act_name = "relu" if act is True else (act or None)
        if act_name is not None and act_name not in _ACTIVATIONS:
            raise ValueError(f"ConvModule: unknown activation {act!r}; choose one of {sorted(_ACTIVATIONS)} or None")
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
            bias=not norm,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS) if norm else None
        self.activate = _ACTIVATIONS[act_name](inplace=True) if act_name else nn.Identity()
        # mmcv's ConvModule.init_weights: kaiming normal, fan_out, relu gain, bias 0; norm weight 1, bias 0.
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if self.bn is not None:
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply conv, BN and activation."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x)


class DepthwiseSeparableConvModule(nn.Module):
    """mmcv's ``DepthwiseSeparableConvModule``: a depthwise ``ConvModule`` then a 1x1 pointwise ``ConvModule``.

    State-dict names: ``depthwise_conv.conv.weight``, ``depthwise_conv.bn.*``, ``pointwise_conv.conv.weight``,
    ``pointwise_conv.bn.*``. Both parts have BN and ReLU (mmcv's default ``dw_*``/``pw_*`` cfgs follow the module's).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, dilation: int = 1
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(
            in_channels, in_channels, kernel_size, padding=padding, dilation=dilation, groups=in_channels
        )
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Depthwise then pointwise convolution."""
        return self.pointwise_conv(self.depthwise_conv(x))


def resize(x: Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = ALIGN_CORNERS) -> Tensor:
    """Bilinear resize of an NCHW tensor to ``size`` (sizes may be symbolic, so this exports with dynamic H, W)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def global_avg_pool(x: Tensor) -> Tensor:
    """``AdaptiveAvgPool2d(1)`` as a mean over H and W: exports to ONNX ``ReduceMean`` with dynamic H, W."""
    return x.mean(dim=(2, 3), keepdim=True)


class GlobalAvgPool2d(nn.Module):
    """Module form of :func:`global_avg_pool` (parameter-free, keeps MMSeg's ``Sequential`` indices)."""

    def forward(self, x: Tensor) -> Tensor:
        """Mean over H and W, keeping them as size-1 dims."""
        return global_avg_pool(x)


def _pool_matrix(length: int | torch.SymInt, bins: int, like: Tensor) -> Tensor:
    """[bins, length] matrix whose row i averages the window [floor(i*L/bins), ceil((i+1)*L/bins))."""
    idx = torch.arange(bins, device=like.device)
    start = torch.div(idx * length, bins, rounding_mode="floor")
    end = torch.div((idx + 1) * length + (bins - 1), bins, rounding_mode="floor")
    pos = torch.arange(length, device=like.device)
    inside = (pos.unsqueeze(0) >= start.unsqueeze(1)) & (pos.unsqueeze(0) < end.unsqueeze(1))
    weight = inside.to(like.dtype) / (end - start).to(like.dtype).unsqueeze(1)
    return weight


def adaptive_avg_pool2d(x: Tensor, bins: int | tuple[int, int]) -> Tensor:
    """Adaptive average pooling of an NCHW tensor to ``bins`` output cells, built from export-friendly ops.

    Numerically the same windows as ``torch.nn.functional.adaptive_avg_pool2d``
    (``start = floor(i*H/bins)``, ``end = ceil((i+1)*H/bins)``), but written as two matmuls with averaging
    matrices built from ``arange`` and comparisons, so ``torch.export``/ONNX keep H and W symbolic
    (ONNX has no adaptive pooling op; the exporter would otherwise bake the input size into a fixed kernel).
    """
    if x.dim() != 4:
        raise ValueError(f"adaptive_avg_pool2d expects an NCHW tensor, got shape {tuple(x.shape)}")
    bins_h, bins_w = (bins, bins) if isinstance(bins, int) else bins
    if bins_h < 1 or bins_w < 1:
        raise ValueError(f"adaptive_avg_pool2d: bins must be >= 1, got {bins}")
    h, w = x.shape[-2], x.shape[-1]
    pool_h = _pool_matrix(h, bins_h, x)  # [bh, H]
    pool_w = _pool_matrix(w, bins_w, x)  # [bw, W]
    return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))


class AdaptiveAvgPool2d(nn.Module):
    """Module form of :func:`adaptive_avg_pool2d` (parameter-free, so it keeps MMSeg's state-dict layout)."""

    def __init__(self, bins: int | tuple[int, int]) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` to ``bins`` cells."""
        return adaptive_avg_pool2d(x, self.bins)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"
