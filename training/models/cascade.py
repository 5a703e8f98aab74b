"""Cascade segmentor: a chain of decode heads, each refining the logits of the one before (MMSeg
``CascadeEncoderDecoder``, used by OCRNet)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .heads.base import BaseDecodeHead
from .segmentor import Segmentor


class CascadeSegmentor(Segmentor):
    """Segmentor whose ``decode_head`` is an ``nn.ModuleList`` of stages (state dict ``decode_head.0.*``, ...).

    Stage 0 is an ordinary head, ``head(feats)``; every later stage takes the features and the previous stage's
    logits, ``head(feats, prev_logits)``. :meth:`forward` returns the last stage's logits (its resolution and
    classes define ``output_stride``, ``num_classes`` and ``align_corners``); :meth:`forward_with_aux` also returns
    the earlier stages' logits (trained with their own losses, as MMSeg does) followed by the auxiliary heads'.

    Args:
        backbone, auxiliary_head, neck, size_divisor: see :class:`Segmentor`.
        decode_heads: at least two stages.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_heads: Sequence[BaseDecodeHead],
        auxiliary_head: BaseDecodeHead | nn.ModuleList | None = None,
        neck: nn.Module | None = None,
        size_divisor: int = 1,
    ) -> None:
        heads = list(decode_heads)
        if len(heads) < 2:
            raise ValueError(f"CascadeSegmentor: needs at least 2 decode heads, got {len(heads)}")
        classes = {h.num_classes for h in heads}
        if len(classes) != 1:
            raise ValueError(f"CascadeSegmentor: every stage must predict the same classes, got {sorted(classes)}")
        super().__init__(backbone, heads[-1], auxiliary_head, neck=neck, size_divisor=size_divisor)
        self.decode_head = nn.ModuleList(heads)  # replaces the last head in place: keys decode_head.{i}.*

    def _stages(self, feats: Sequence[Tensor]) -> list[Tensor]:
        out = self.decode_head[0](feats)
        outs = [out]
        for head in self.decode_head[1:]:
            out = head(feats, out)
            outs.append(out)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the last stage ``[B, num_classes, H/stride, W/stride]`` (not resized to the input)."""
        self._check_input(x)
        return self._stages(self.extract_feat(x))[-1]

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Last-stage logits and the list of auxiliary logits: the earlier stages', then each auxiliary head's."""
        self._check_input(x)
        feats = self.extract_feat(x)
        *earlier, last = self._stages(feats)
        heads = self.auxiliary_head if isinstance(self.auxiliary_head, nn.ModuleList) else [self.auxiliary_head]
        return last, [*earlier, *(head(feats) for head in heads if head is not None)]
