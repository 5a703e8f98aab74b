"""Segmentor = backbone (+ optional neck) + decode head (+ optional auxiliary head), MMSeg ``EncoderDecoder`` layout."""

from __future__ import annotations

import math

from torch import Tensor, nn

from .heads.base import BaseDecodeHead


class Segmentor(nn.Module):
    """Encoder-decoder segmentation model whose state dict has MMSeg's prefixes
    (``backbone.``, ``neck.``, ``decode_head.``, ``auxiliary_head.``).

    ``forward`` returns the decode head's logits at low resolution ``[B, K, ceil(H/s), ceil(W/s)]`` with
    ``s = output_stride``; resizing to the input size (bilinear, ``align_corners`` as stated by the model, False in
    segrt) and argmax are the engine's job, so the exported graph ends here.

    Args:
        backbone: module returning a tuple of feature maps and exposing ``out_channels`` and ``out_strides``
            (one per output) and ``in_channels`` (image channels).
        decode_head: the main head; its logits have the stride of feature map ``decode_head.output_index``.
        auxiliary_head: optional training-only head, or a ``ModuleList`` of them (MMSeg's list of auxiliary
            heads: ``auxiliary_head.0.*``, ...); ignored by ``forward`` and export.
        neck: optional module mapping the backbone's tuple to another tuple of maps with the same strides (FPN);
            both heads then read the neck's outputs, as in MMSeg's ``extract_feat``.
        size_divisor: input H and W must be multiples of this (U-Net's 16); 1 for models taking any size.

    Heads that upsample their input (SETR-PUP, U-Net decoders) set ``upsample`` (an int, default 1); the logits
    then have ``ceil(H / backbone_stride) * upsample`` rows (:meth:`logits_hw`) and ``output_stride`` is
    ``backbone_stride // upsample`` (at least 1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: BaseDecodeHead,
        auxiliary_head: BaseDecodeHead | nn.ModuleList | None = None,
        neck: nn.Module | None = None,
        size_divisor: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.num_classes: int = decode_head.num_classes
        self.align_corners: bool = decode_head.align_corners
        # a neck that changes resolutions (FastFCN's JPU) says so with its own ``out_strides``
        strides = getattr(neck, "out_strides", None) or backbone.out_strides
        self.feature_stride: int = int(strides[decode_head.output_index])
        self.upsample: int = int(getattr(decode_head, "upsample", 1))
        self.output_stride: int = max(1, self.feature_stride // self.upsample)
        if size_divisor < 1:
            raise ValueError(f"Segmentor: size_divisor must be >= 1, got {size_divisor}")
        # a backbone that needs multiples of N (ConvNeXt's unpadded downsampling: 32) says so with ``size_divisor``
        self.size_divisor = math.lcm(int(size_divisor), int(getattr(backbone, "size_divisor", 1)))
        self.in_channels: int = int(getattr(backbone, "in_channels", 3))

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Segmentor: expected an input of shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"Segmentor: expected a floating-point input, got dtype {x.dtype}")
        d = self.size_divisor
        if d > 1 and not (isinstance(x.shape[2], int) and isinstance(x.shape[3], int)):
            return
        if d > 1 and (x.shape[2] % d or x.shape[3] % d):
            raise ValueError(f"Segmentor: input H and W must be multiples of {d}, got {tuple(x.shape[2:])}")

    def logits_hw(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of the logits for an ``h x w`` input."""
        s, up = self.feature_stride, self.upsample
        return -(-h // s) * up, -(-w // s) * up

    def forward(self, x: Tensor) -> Tensor:
        """Decode-head logits ``[B, num_classes, H/stride, W/stride]`` (not resized to the input)."""
        self._check_input(x)
        return self.decode_head(self.extract_feat(x))

    def extract_feat(self, x: Tensor) -> tuple[Tensor, ...]:
        """Backbone (and neck) feature maps."""
        feats = self.backbone(x)
        return feats if self.neck is None else self.neck(feats)

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Decode logits and the list of auxiliary logits, for training: first the decode head's own extra outputs
        (a head with ``forward_train(feats) -> (logits, [extra logits])``), then one per auxiliary head."""
        self._check_input(x)
        feats = self.extract_feat(x)
        heads = self.auxiliary_head if isinstance(self.auxiliary_head, nn.ModuleList) else [self.auxiliary_head]
        aux = [head(feats) for head in heads if head is not None]
        train_fn = getattr(self.decode_head, "forward_train", None)
        if train_fn is None:
            return self.decode_head(feats), aux
        out, extra = train_fn(feats)  # heads with training-only outputs (DANet's PAM/CAM logits)
        return out, [*extra, *aux]
