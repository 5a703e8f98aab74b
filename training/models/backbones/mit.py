"""Mix Transformer (MiT-B0..B5), the SegFormer encoder, laid out like MMSegmentation 1.x ``MixVisionTransformer``.

State-dict names follow MMSeg so its checkpoints load unchanged. Stage ``i`` is ``layers.{i}``, a list of three:
``layers.{i}.0`` the overlapping patch embedding (``projection`` conv with padding ``patch_size // 2``, then
``norm``), ``layers.{i}.1.{j}`` its encoder layers (``norm1``, ``attn``, ``norm2``, ``ffn``) and ``layers.{i}.2``
the stage's LayerNorm. The attention keeps the parameters of the ``nn.MultiheadAttention`` MMSeg wraps
(``attn.attn.in_proj_weight``/``in_proj_bias``, ``attn.attn.out_proj``) with the keys and values taken from a
spatially reduced copy of the tokens (``attn.sr`` conv of kernel and stride ``sr_ratio``, then ``attn.norm``).
The Mix-FFN is ``ffn.layers``: 1x1 conv, 3x3 depthwise conv, GELU, dropout, 1x1 conv, dropout.

The attention is written with ``scaled_dot_product_attention`` on symbolic sizes (the same numbers as
``nn.MultiheadAttention``), so the network exports to ONNX with dynamic H and W and compiles with ``fullgraph``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: MMSeg's configs per variant: (embed_dims, num_layers per stage); heads (1, 2, 5, 8) for all of them.
MIT_ARCH: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "b0": (32, (2, 2, 2, 2)),
    "b1": (64, (2, 2, 2, 2)),
    "b2": (64, (3, 4, 6, 3)),
    "b3": (64, (3, 4, 18, 3)),
    "b4": (64, (3, 8, 27, 3)),
    "b5": (64, (3, 6, 40, 3)),
}
MIT_HEADS = (1, 2, 5, 8)


def nlc_to_nchw(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """[B, H*W, C] tokens -> [B, C, H, W] map (sizes may be symbolic)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


def nchw_to_nlc(x: Tensor) -> Tensor:
    """[B, C, H, W] map -> [B, H*W, C] tokens."""
    return x.flatten(2).transpose(1, 2)


class DropPath(nn.Module):
    """Stochastic depth per sample (mmcv's ``DropPath``): identity in eval mode or at ``drop_prob`` 0."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        """Zero whole samples with probability ``drop_prob`` and rescale the rest."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x / keep * (mask + keep).floor()

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class MultiheadAttentionCore(nn.Module):
    """The parameters of ``nn.MultiheadAttention`` (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) with a
    batch-first forward over [B, N, C] queries and [B, M, C] keys/values; ``bias=False`` drops both biases."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"MultiheadAttentionCore: embed_dims {embed_dims} not divisible by num_heads {num_heads}")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.attn_drop = float(attn_drop)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims)) if bias else None
        self.out_proj = nn.Linear(embed_dims, embed_dims, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        """Multi-head attention of ``query`` over ``key_value`` (both batch first)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        b, n = query.shape[0], query.shape[1]
        heads, dims = self.num_heads, self.embed_dims // self.num_heads
        q = F.linear(query, w_q, b_q).reshape(b, n, heads, dims).transpose(1, 2)
        k = F.linear(key_value, w_k, b_k).reshape(b, -1, heads, dims).transpose(1, 2)
        v = F.linear(key_value, w_v, b_v).reshape(b, -1, heads, dims).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.embed_dims))


class EfficientMultiheadAttention(nn.Module):
    """SegFormer's attention with spatial reduction of keys/values (MMSeg ``EfficientMultiheadAttention``)."""

    def __init__(
        self, embed_dims: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True, attn_drop: float = 0.0,
        proj_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.attn = MultiheadAttentionCore(embed_dims, num_heads, attn_drop, bias=qkv_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = DropPath(drop_path)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)

    def forward(self, x: Tensor, hw: tuple[int, int], identity: Tensor) -> Tensor:
        """``identity`` + attention of the tokens ``x`` ([B, H*W, C]) over their reduced copy."""
        kv = x
        if self.sr_ratio > 1:
            kv = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, hw))))
        return identity + self.dropout_layer(self.proj_drop(self.attn(x, kv)))


class MixFFN(nn.Module):
    """1x1 conv -> 3x3 depthwise conv (positional information) -> GELU -> 1x1 conv, on the token map."""

    def __init__(self, embed_dims: int, hidden: int, drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(embed_dims, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Dropout(drop),
            nn.Conv2d(hidden, embed_dims, 1),
            nn.Dropout(drop),
        )
        self.dropout_layer = DropPath(drop_path)

    def forward(self, x: Tensor, hw: tuple[int, int], identity: Tensor) -> Tensor:
        """``identity`` + the FFN of the tokens ``x``."""
        return identity + self.dropout_layer(nchw_to_nlc(self.layers(nlc_to_nchw(x, hw))))


class TransformerEncoderLayer(nn.Module):
    """Pre-norm encoder layer: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``."""

    def __init__(
        self, embed_dims: int, num_heads: int, hidden: int, sr_ratio: int, qkv_bias: bool, drop: float,
        attn_drop: float, drop_path: float, norm_eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = EfficientMultiheadAttention(embed_dims, num_heads, sr_ratio, qkv_bias, attn_drop, drop,
                                                drop_path, norm_eps)
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.ffn = MixFFN(embed_dims, hidden, drop, drop_path)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """One layer on [B, H*W, C] tokens."""
        x = self.attn(self.norm1(x), hw, identity=x)
        return self.ffn(self.norm2(x), hw, identity=x)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv (padding ``kernel // 2``), flatten to tokens, LayerNorm."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int, norm_eps: float) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Tokens [B, h*w, C] and their grid size (h, w)."""
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(nchw_to_nlc(x)), hw


def _per_stage(value: int | float | Sequence, n: int, what: str) -> tuple:
    values = tuple(value) if isinstance(value, Sequence) else (value,) * n
    if len(values) != n:
        raise ValueError(f"MixVisionTransformer: {what} needs {n} entries (one per stage), got {values}")
    return values


class MixVisionTransformer(nn.Module):
    """MiT encoder (Xie et al., 2021) returning one NCHW map per stage in ``out_indices`` (MMSeg layout).

    Args:
        in_channels: image channels.
        embed_dims: per-head width; stage ``i`` has ``embed_dims * num_heads[i]`` channels (32: B0, 64: B1-B5).
        num_layers: encoder layers per stage (B0/B1 (2,2,2,2), B2 (3,4,6,3), B3 (3,4,18,3), B4 (3,8,27,3),
            B5 (3,6,40,3)).
        num_heads: attention heads per stage.
        patch_sizes, strides: kernel and stride of each stage's patch embedding (output stride 4, 8, 16, 32).
        sr_ratios: key/value spatial reduction per stage.
        out_indices: stages to return.
        mlp_ratio: FFN hidden width over the stage width (one value, or one per stage).
        qkv_bias: biases in the attention projections.
        drop_rate, attn_drop_rate: dropout after the attention/FFN projections and on the attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 over all layers to this value.
        norm_eps: LayerNorm epsilon (MMSeg 1e-6; Hugging Face's ``SegformerModel`` uses torch's default 1e-5).
        stage_dims: explicit stage widths, overriding ``embed_dims * num_heads[i]`` (e.g. Hugging Face's
            ``hidden_sizes``); each must be divisible by its number of heads.
    """

    #: stage index of each pyramid level (strides 4, 8, 16, 32).
    level_indices: tuple[int, ...] = (0, 1, 2, 3)

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: int = 64,
        num_layers: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        mlp_ratio: int | Sequence[int] = 4,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        stage_dims: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        n = len(num_layers)
        if n < 1 or any(d < 1 for d in num_layers):
            raise ValueError(f"MixVisionTransformer: num_layers must be positive, got {tuple(num_layers)}")
        heads = _per_stage(num_heads, n, "num_heads")
        patch_sizes, strides = _per_stage(patch_sizes, n, "patch_sizes"), _per_stage(strides, n, "strides")
        sr_ratios, mlp_ratios = _per_stage(sr_ratios, n, "sr_ratios"), _per_stage(mlp_ratio, n, "mlp_ratio")
        dims = tuple(embed_dims * h for h in heads) if stage_dims is None else _per_stage(stage_dims, n, "stage_dims")
        if any(d % h for d, h in zip(dims, heads)):
            raise ValueError(f"MixVisionTransformer: stage widths {dims} must be divisible by num_heads {heads}")
        if not out_indices or any(not 0 <= i < n for i in out_indices):
            raise ValueError(f"MixVisionTransformer: out_indices must be a non-empty subset of 0..{n - 1}, "
                             f"got {tuple(out_indices)}")
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.num_layers = tuple(num_layers)
        self.stage_dims = dims
        self.out_indices = tuple(out_indices)
        drop_paths = torch.linspace(0, drop_path_rate, sum(num_layers), device="cpu").tolist()
        self.layers = nn.ModuleList()
        cur, channels = 0, in_channels
        for i, depth in enumerate(num_layers):
            blocks = nn.ModuleList(
                TransformerEncoderLayer(dims[i], heads[i], int(mlp_ratios[i] * dims[i]), sr_ratios[i], qkv_bias,
                                        drop_rate, attn_drop_rate, drop_paths[cur + j], norm_eps)
                for j in range(depth)
            )
            embed = PatchEmbed(channels, dims[i], patch_sizes[i], strides[i], norm_eps)
            self.layers.append(nn.ModuleList([embed, blocks, nn.LayerNorm(dims[i], eps=norm_eps)]))
            cur, channels = cur + depth, dims[i]
        stage_strides = [math.prod(strides[: i + 1]) for i in range(n)]
        self.out_channels: tuple[int, ...] = tuple(dims[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(stage_strides[i] for i in self.out_indices)
        self.output_stride: int = stage_strides[-1]
        #: width relative to MiT-B1..B5 (512 channels in the last stage); the ``mit-b0`` factory uses B0's 256.
        self.width_scale: float = dims[-1] / 512
        self._init_weights()

    def _init_weights(self) -> None:
        """MMSeg's ``init_weights``: truncated normal (std 0.02) Linear, unit LayerNorm, He-normal convs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Return the NCHW maps of the stages in ``out_indices``."""
        outs = []
        for i, (embed, blocks, norm) in enumerate(self.layers):
            if i > max(self.out_indices):
                break
            x, hw = embed(x)
            for block in blocks:
                x = block(x, hw)
            x = nlc_to_nchw(norm(x), hw)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
