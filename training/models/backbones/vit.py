"""Vision Transformer backbone laid out like MMSegmentation 1.x ``VisionTransformer`` (SETR, Segmenter, ViT-UPerNet).

State-dict names follow MMSeg so its checkpoints load unchanged: ``patch_embed.projection`` (+ ``patch_embed.norm``
with ``patch_norm``), ``cls_token``, ``pos_embed`` (``[1, 1 + grid_h * grid_w, C]`` for the training ``img_size``),
``ln_pre`` (``pre_norm``), ``layers.{i}.ln1``, ``layers.{i}.attn.attn.{in_proj_weight,in_proj_bias,out_proj.*}``,
``layers.{i}.ln2``, ``layers.{i}.ffn.layers.0.0.*`` / ``ffn.layers.1.*`` (two FC layers) and ``ln1`` (``final_norm``).

Inputs of any size work: the image is zero-padded at the bottom/right to a multiple of the patch size (MMSeg's
``patch_pad='corner'``), and the position embedding is resized from its training grid to the current patch grid
with ``F.interpolate(size=(h, w))`` (``interpolate_mode`` bilinear or bicubic, ``align_corners=False``), with h and w
taken from the tensor, so ``torch.export``/ONNX keep H and W symbolic. Unlike MMSeg, which resizes only when the token
counts differ, the embedding is always resized; at the training grid that is an exact identity, so the numbers are
MMSeg's at every size except a grid of the same area but another shape (e.g. 16x64 for a 32x32 training grid), where
MMSeg adds the unresized embedding and this module the resized one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INTERPOLATE_MODES = ("bilinear", "bicubic")
PATCH_PADS = ("corner", "same")


def resize_pos_embed(pos_embed: Tensor, grid: Sequence[int], pos_grid: Sequence[int], mode: str) -> Tensor:
    """MMSeg's ``resize_pos_embed``: ``[1, 1 + ph * pw, C]`` (class slot first) -> ``[1, 1 + h * w, C]``.

    ``grid`` is the target patch grid ``(h, w)`` (ints or symbolic sizes), ``pos_grid`` the trained ``(ph, pw)``;
    the class-token slot is kept, the grid part is resized with ``F.interpolate(mode, align_corners=False)``.
    """
    if pos_embed.dim() != 3:
        raise ValueError(f"resize_pos_embed: expected [1, L, C], got shape {tuple(pos_embed.shape)}")
    ph, pw = pos_grid
    if pos_embed.shape[1] != ph * pw + 1:
        raise ValueError(f"resize_pos_embed: {pos_embed.shape[1]} tokens do not make 1 + {ph}x{pw}")
    channels = pos_embed.shape[2]
    cls_pos = pos_embed[:, :1]
    grid_pos = pos_embed[:, 1:].reshape(1, ph, pw, channels).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos, size=(grid[0], grid[1]), mode=mode, align_corners=False)
    return torch.cat([cls_pos, grid_pos.flatten(2).transpose(1, 2)], dim=1)


class PatchEmbed(nn.Module):
    """Patch embedding: adaptive zero padding to a multiple of the patch, a strided conv ``projection``, optional LN.

    ``padding`` is ``'corner'`` (pad bottom/right, MMSeg's default), ``'same'`` (pad both sides, TF style) or an int
    (the conv's own padding).
    """

    def __init__(
        self, in_channels: int, embed_dims: int, patch_size: int, padding: str | int, bias: bool, norm_eps: float | None
    ) -> None:
        super().__init__()
        if isinstance(padding, str) and padding not in PATCH_PADS:
            raise ValueError(f"PatchEmbed: patch_pad must be one of {PATCH_PADS} or an int, got {padding!r}")
        self.patch_size = patch_size
        self.adaptive = padding if isinstance(padding, str) else None
        conv_pad = 0 if isinstance(padding, str) else int(padding)
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size, padding=conv_pad,
                                    bias=bias)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps) if norm_eps is not None else None

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        """``[B, h * w, C]`` tokens (row-major) and the patch grid ``h, w``."""
        if self.adaptive is not None:
            p = self.patch_size
            pad_h = (p - x.shape[2] % p) % p  # up to ceil(H / p) * p; symbolic under export
            pad_w = (p - x.shape[3] % p) % p
            if self.adaptive == "corner":
                x = F.pad(x, [0, pad_w, 0, pad_h])
            else:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        x = self.projection(x)
        h, w = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, h, w


class DropPath(nn.Module):
    """Stochastic depth per sample (mmcv's ``DropPath``); identity in eval mode or at ``drop_prob=0``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """Zero whole samples with probability ``drop_prob`` (training only), rescaling the rest."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters (``in_proj_weight`` ``[3C, C]``,
    ``in_proj_bias``, ``out_proj``), computed with ``scaled_dot_product_attention`` (batch first)."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"SelfAttention: embed_dims {embed_dims} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims)) if bias else None
        self.out_proj = nn.Linear(embed_dims, embed_dims, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)  # torch's MHA init (MMSeg's init leaves it alone)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, C] -> [B, N, C]``."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class Attention(nn.Module):
    """mmcv's ``MultiheadAttention`` wrapper: ``attn`` (:class:`SelfAttention`), projection dropout, residual."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float, proj_drop: float, bias: bool) -> None:
        super().__init__()
        self.attn = SelfAttention(embed_dims, num_heads, attn_drop, bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, identity: Tensor) -> Tensor:
        """``identity + dropout(attn(x))``."""
        return identity + self.proj_drop(self.attn(x))


class FFN(nn.Module):
    """mmcv's ``FFN``: ``layers = [[Linear, GELU, Dropout] * (num_fcs - 1), Linear, Dropout]``, residual with an
    optional drop path."""

    def __init__(self, embed_dims: int, hidden: int, num_fcs: int, drop: float, drop_path: float) -> None:
        super().__init__()
        if num_fcs < 2:
            raise ValueError(f"FFN: num_fcs must be >= 2, got {num_fcs}")
        blocks: list[nn.Module] = []
        in_dims = embed_dims
        for _ in range(num_fcs - 1):
            blocks.append(nn.Sequential(nn.Linear(in_dims, hidden), nn.GELU(), nn.Dropout(drop)))
            in_dims = hidden
        blocks += [nn.Linear(hidden, embed_dims), nn.Dropout(drop)]
        self.layers = nn.Sequential(*blocks)
        self.dropout_layer = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, identity: Tensor) -> Tensor:
        """``identity + drop_path(mlp(x))``."""
        return identity + self.dropout_layer(self.layers(x))


class TransformerEncoderLayer(nn.Module):
    """Pre-norm encoder layer (MMSeg's ``TransformerEncoderLayer``): ``x + attn(ln1(x))``, then ``x + ffn(ln2(x))``.

    As in MMSeg, the stochastic depth (``drop_path``) applies to the FFN branch only.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = Attention(embed_dims, num_heads, attn_drop_rate, drop_rate, qkv_bias)
        self.ln2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.ffn = FFN(embed_dims, feedforward_channels, num_fcs, drop_rate, drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, C] -> [B, N, C]``."""
        x = self.attn(self.ln1(x), identity=x)
        return self.ffn(self.ln2(x), identity=x)


def init_transformer_weights(module: nn.Module) -> None:
    """MMSeg's ViT init: Linear weights truncated-normal (std 0.02), biases 0 (FFN biases N(0, 1e-6)), convs kaiming
    (fan_in), LayerNorm 1/0; ``SelfAttention.in_proj_weight`` keeps torch's Xavier init."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                if "ffn" in name:
                    nn.init.normal_(m.bias, std=1e-6)
                else:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VisionTransformer(nn.Module):
    """ViT backbone returning the patch-grid maps ``[B, C, ceil(H/p), ceil(W/p)]`` of the layers in ``out_indices``
    (MMSeg ``VisionTransformer``; every output has stride ``patch_size``).

    Args:
        img_size: training image size; fixes the position-embedding grid ``img_size // patch_size``.
        patch_size: patch (and conv stride) size, 16 for every MMSeg config.
        patch_pad: ``'corner'`` (default), ``'same'`` or an int conv padding.
        in_channels: image channels.
        embed_dims, num_layers, num_heads, mlp_ratio: width, depth, heads, FFN ratio (4).
        out_indices: layers whose outputs are returned (``-1``: the last one).
        qkv_bias: bias in the attention projections.
        drop_rate, attn_drop_rate, drop_path_rate: dropout after the position embedding and in each layer,
            attention dropout, stochastic depth (linearly increasing over the layers).
        with_cls_token: feed the class token through the layers (False: it is dropped after the position embedding).
        output_cls_token: each output becomes ``[map, cls_token]`` (needs ``with_cls_token``).
        norm_eps: LayerNorm eps (1e-6 in every MMSeg ViT config).
        patch_norm, patch_bias, pre_norm, final_norm: LN after the patch conv, bias in it, LN before the layers
            (``ln_pre``), LN after the last layer (``ln1``).
        interpolate_mode: ``'bilinear'`` or ``'bicubic'`` resize of the position embedding.
        num_fcs: FC layers per FFN (2).
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        patch_pad: str | int = "corner",
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        out_indices: int | Sequence[int] = -1,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        with_cls_token: bool = True,
        output_cls_token: bool = False,
        norm_eps: float = 1e-6,
        patch_norm: bool = False,
        patch_bias: bool = False,
        pre_norm: bool = False,
        final_norm: bool = False,
        interpolate_mode: str = "bicubic",
        num_fcs: int = 2,
    ) -> None:
        super().__init__()
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if len(size) == 1:
            size = (size[0], size[0])
        if len(size) != 2 or min(size) < patch_size or patch_size < 1:
            raise ValueError(f"VisionTransformer: img_size {img_size} must be 1 or 2 sizes >= patch_size {patch_size}")
        if output_cls_token and not with_cls_token:
            raise ValueError("VisionTransformer: output_cls_token=True needs with_cls_token=True")
        if interpolate_mode not in INTERPOLATE_MODES:
            raise ValueError(f"VisionTransformer: interpolate_mode must be one of {INTERPOLATE_MODES}, "
                             f"got {interpolate_mode!r}")
        if num_layers < 1 or embed_dims < 1 or num_heads < 1 or embed_dims % num_heads:
            raise ValueError(f"VisionTransformer: need num_layers >= 1 and embed_dims divisible by num_heads, got "
                             f"{num_layers}, {embed_dims}, {num_heads}")
        indices = [num_layers - 1 if out_indices == -1 else out_indices] if isinstance(out_indices, int) \
            else list(out_indices)
        if not indices or any(not 0 <= i < num_layers for i in indices) or indices != sorted(set(indices)):
            raise ValueError(f"VisionTransformer: out_indices must be increasing layers in 0..{num_layers - 1}, "
                             f"got {out_indices}")
        self.img_size = size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.interpolate_mode = interpolate_mode
        self.with_cls_token = with_cls_token
        self.output_cls_token = output_cls_token
        self.final_norm = final_norm
        self.pos_grid = (size[0] // patch_size, size[1] // patch_size)
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size, patch_pad, patch_bias,
                                      norm_eps if patch_norm else None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1] + 1, embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.ln_pre = nn.LayerNorm(embed_dims, eps=norm_eps) if pre_norm else None
        dpr = [drop_path_rate * i / max(1, num_layers - 1) for i in range(num_layers)]  # linspace(0, rate, depth)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, mlp_ratio * embed_dims, drop_rate, attn_drop_rate, dpr[i],
                                    num_fcs, qkv_bias, norm_eps)
            for i in range(num_layers)
        )
        self.ln1 = nn.LayerNorm(embed_dims, eps=norm_eps) if final_norm else None

        self.out_indices: tuple[int, ...] = tuple(indices)
        self.out_channels: tuple[int, ...] = (embed_dims,) * len(indices)
        self.out_strides: tuple[int, ...] = (patch_size,) * len(indices)
        # Layers standing for the "pyramid levels" 0..3 (all at stride patch_size): the last four output layers, the
        # first repeated when there are fewer, so heads asking for level 3 read the last output.
        last = indices[-4:]
        self.level_indices: tuple[int, ...] = tuple([last[0]] * (4 - len(last)) + last)
        self.output_stride: int = patch_size
        self.width_scale: float = embed_dims / 768
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_transformer_weights(self)

    def _to_map(self, x: Tensor, h: int, w: int) -> Tensor | list[Tensor]:
        out = x[:, 1:] if self.with_cls_token else x
        out = out.transpose(1, 2).reshape(out.shape[0], self.embed_dims, h, w)
        # A contiguous NCHW copy (MMSeg's .contiguous()), made without the contiguity test that would make
        # torch.export specialise the batch size to 1 (a sliced, strided view makes a later Linear do the same).
        out = out.clone(memory_format=torch.contiguous_format)
        return [out, x[:, 0]] if self.output_cls_token else out

    def forward(self, x: Tensor) -> tuple[Tensor | list[Tensor], ...]:
        """One ``[B, embed_dims, ceil(H/p), ceil(W/p)]`` map per entry of ``out_indices``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"VisionTransformer: expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        tokens, h, w = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        pos = resize_pos_embed(self.pos_embed, (h, w), self.pos_grid, self.interpolate_mode)
        tokens = self.drop_after_pos(tokens + pos)
        if not self.with_cls_token:
            tokens = tokens[:, 1:]
        if self.ln_pre is not None:
            tokens = self.ln_pre(tokens)
        outs = []
        for i, layer in enumerate(self.layers):
            tokens = layer(tokens)
            if i == self.num_layers - 1 and self.ln1 is not None:
                tokens = self.ln1(tokens)
            if i in self.out_indices:
                outs.append(self._to_map(tokens, h, w))
        return tuple(outs)
