"""Segmenter's mask transformer decode head (MMSeg ``SegmenterMaskTransformerHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.vit import TransformerEncoderLayer
from .base import BaseDecodeHead


class SegmenterMaskTransformerHead(BaseDecodeHead):
    """Mask transformer (Strudel et al., 2021): patch tokens (``dec_proj``) and one learned embedding per class
    (``cls_emb``) go through ``layers`` (ViT encoder layers) and ``decoder_norm``; the masks are the cosine
    similarities of the projected patches (``patch_proj``) and classes (``classes_proj``), normalised over the
    classes by ``mask_norm``. Like MMSeg's head it has no ``conv_seg``; its LayerNorms use eps 1e-5.

    Args:
        in_channels: channels of the input map (the ViT's ``embed_dims``).
        channels: MMSeg's ``channels`` (unused by the computation; kept for the config).
        num_layers, num_heads, embed_dims, mlp_ratio: the decoder transformer.
        drop_path_rate, drop_rate, attn_drop_rate: stochastic depth (linear over the layers), dropouts.
        qkv_bias: bias in the attention projections.
        norm_eps: eps of every LayerNorm of the head.
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        num_layers: int = 2,
        num_heads: int = 12,
        embed_dims: int = 768,
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if not isinstance(self.in_channels, int):
            raise ValueError(f"SegmenterMaskTransformerHead: needs a single input, got in_channels {in_channels}")
        if num_layers < 1:
            raise ValueError(f"SegmenterMaskTransformerHead: num_layers must be >= 1, got {num_layers}")
        del self.conv_seg  # MMSeg deletes it: the masks are the logits
        dpr = [drop_path_rate * i / max(1, num_layers - 1) for i in range(num_layers)]
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, mlp_ratio * embed_dims, drop_rate, attn_drop_rate, dpr[i],
                                    qkv_bias=qkv_bias, norm_eps=norm_eps)
            for i in range(num_layers)
        )
        self.dec_proj = nn.Linear(in_channels, embed_dims)
        self.cls_emb = nn.Parameter(torch.zeros(1, self.num_classes, embed_dims))
        self.patch_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.classes_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.decoder_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mask_norm = nn.LayerNorm(self.num_classes, eps=norm_eps)
        # MMSeg's init_weights: truncated normal (std 0.02) for cls_emb and every Linear, zero biases, LN 1/0.
        nn.init.trunc_normal_(self.cls_emb, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Class masks ``[B, num_classes, h, w]`` at the input map's resolution."""
        x = self._select(inputs)
        b, c, h, w = x.shape
        x = self.dec_proj(x.flatten(2).transpose(1, 2))
        x = torch.cat([x, self.cls_emb.expand(b, -1, -1)], dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        k = self.num_classes
        # Dense copies of the two token slices: a Linear over a strided slice makes torch.export fix the batch at 1.
        patches = x[:, :-k].clone(memory_format=torch.contiguous_format)
        classes = x[:, -k:].clone(memory_format=torch.contiguous_format)
        patches = F.normalize(self.patch_proj(patches), dim=2, p=2)
        classes = F.normalize(self.classes_proj(classes), dim=2, p=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return masks.transpose(1, 2).reshape(b, k, h, w)
