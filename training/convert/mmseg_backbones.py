"""MMSeg backbone dicts -> segrt backbones: :data:`BACKBONES` maps each MMSeg backbone type to a mapper that
returns (segrt backbone name, backbone_kwargs) and records on the :class:`~training.convert.mmseg_spec.ModelSpec`
the checks of every other setting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.convert.mmseg_spec import _NO_ATTR, _REQUIRED, ModelSpec, Part, _act, _norm, _Section


def _backbone_checks(sec: _Section, spec: ModelSpec, part: Part, kwargs: dict[str, Any], attrs: tuple[str, ...],
                     ) -> None:
    for k in attrs:
        if k in kwargs:
            spec.check(sec.key(k), kwargs[k], lambda m, k=k: getattr(part(m), k, _NO_ATTR), optional=True)


def _resnet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    depth = sec.get("depth")
    deep = True if sec.type == "ResNetV1c" else bool(sec.get("deep_stem", False))
    sec.expect("avg_down", sec.type == "ResNetV1d", (False,))
    sec.expect("num_stages", 4, (4,))
    sec.expect("style", "pytorch", ("pytorch",))
    for key in ("dcn", "plugins", "multi_grid", "conv_cfg"):
        sec.expect(key, None, (None,))
    sec.get("stage_with_dcn", None)  # only read with dcn
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "stem_channels": sec.get("stem_channels", 64),
        "base_channels": sec.get("base_channels", 64), "strides": sec.get("strides", (1, 2, 2, 2)),
        "dilations": sec.get("dilations", (1, 1, 1, 1)), "out_indices": sec.get("out_indices", (0, 1, 2, 3)),
        "contract_dilation": sec.get("contract_dilation", False),
    }
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    spec.check(sec.key("depth"), depth, lambda m: part(m).depth)
    spec.check(sec.key("deep_stem"), deep, lambda m: part(m).deep_stem)
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "strides", "dilations", "out_indices"))
    return f"resnet{depth}" + ("" if deep else "-v1b"), kwargs


def _mobilenetv2(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "widen_factor": float(sec.get("widen_factor", 1.0)), "strides": sec.get("strides", (1, 2, 2, 2, 1, 2, 1)),
        "dilations": sec.get("dilations", (1,) * 7), "out_indices": sec.get("out_indices", (1, 2, 4, 6)),
    }
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU6", ("ReLU6",))
    _backbone_checks(sec, spec, part, kwargs, ("widen_factor", "strides", "dilations", "out_indices"))
    return "mobilenetv2", kwargs


def _mobilenetv3(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    arch = sec.expect("arch", "small", ("small", "large"))
    sec.expect("conv_cfg", None, (None,))
    kwargs: dict[str, Any] = {"out_indices": sec.get("out_indices", (0, 1, 12)),
                              "reduction_factor": sec.get("reduction_factor", 1)}
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _backbone_checks(sec, spec, part, kwargs, ("out_indices", "reduction_factor"))
    return f"mobilenetv3-{arch}", kwargs


def _mit(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    from training.models.backbones.mit import MIT_ARCH

    sec.expect("num_stages", 4, (4,))
    kwargs: dict[str, Any] = {
        "in_channels": sec.get("in_channels", 3), "embed_dims": sec.get("embed_dims", 64),
        "num_layers": sec.get("num_layers", (3, 4, 6, 3)), "num_heads": sec.get("num_heads", (1, 2, 4, 8)),
        "patch_sizes": sec.get("patch_sizes", (7, 3, 3, 3)), "strides": sec.get("strides", (4, 2, 2, 2)),
        "sr_ratios": sec.get("sr_ratios", (8, 4, 2, 1)), "out_indices": sec.get("out_indices", (0, 1, 2, 3)),
        "mlp_ratio": sec.get("mlp_ratio", 4), "qkv_bias": sec.get("qkv_bias", True),
        "drop_rate": sec.get("drop_rate", 0.0), "attn_drop_rate": sec.get("attn_drop_rate", 0.0),
        "drop_path_rate": sec.get("drop_path_rate", 0.0),
    }
    _act(sec, "act_cfg", "GELU", ("GELU",))
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "LN", "eps": 1e-6}, part, allowed=("LN",))
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "out_indices"))
    variant = next((v for v, (dims, layers) in MIT_ARCH.items()
                    if dims == kwargs["embed_dims"] and tuple(layers) == tuple(kwargs["num_layers"])), "b0")
    return f"mit-{variant}", kwargs


def _convnext(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    from training.models.backbones.convnext import ARCH

    arch = sec.get("arch", "tiny")
    kwargs: dict[str, Any] = {}
    if isinstance(arch, dict):  # mmpretrain also takes dict(depths=..., channels=...)
        kwargs.update(depths=tuple(arch["depths"]), channels=tuple(arch["channels"]))
        name = "convnext-tiny"
    elif arch in ARCH:
        name = f"convnext-{arch}"
        kwargs.update(depths=ARCH[arch][0], channels=ARCH[arch][1])
    else:
        sec.fail("arch", arch, f"segrt's ConvNeXt archs are {sorted(ARCH)} or dict(depths=..., channels=...)")
    out = sec.get("out_indices", -1)
    kwargs.update(
        in_channels=sec.get("in_channels", 3), stem_patch_size=sec.get("stem_patch_size", 4),
        drop_path_rate=sec.get("drop_path_rate", 0.0), layer_scale_init_value=sec.get("layer_scale_init_value", 1e-6),
        out_indices=tuple(i % 4 for i in ((out,) if isinstance(out, int) else out)),
    )
    sec.expect("gap_before_final_norm", True, (False,))
    sec.expect("linear_pw_conv", True, (True,))
    sec.expect("use_grn", False, (False,))
    _norm(sec, spec, "norm_cfg", {"type": "LN2d", "eps": 1e-6}, part, allowed=("LN2d",))
    _act(sec, "act_cfg", "GELU", ("GELU",))
    _backbone_checks(sec, spec, part, kwargs, ("out_indices", "in_channels"))
    spec.check(sec.key("arch") + " (depths)", kwargs["depths"], lambda m: part(m).depths)
    spec.check(sec.key("arch") + " (channels)", kwargs["channels"], lambda m: part(m).channels)
    return name, kwargs


def _unet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "base_channels": sec.get("base_channels", 64),
        "num_stages": sec.get("num_stages", 5), "strides": sec.get("strides", (1, 1, 1, 1, 1)),
        "enc_num_convs": sec.get("enc_num_convs", (2, 2, 2, 2, 2)), "dec_num_convs": sec.get("dec_num_convs",
                                                                                              (2, 2, 2, 2)),
        "downsamples": sec.get("downsamples", (True, True, True, True)),
        "enc_dilations": sec.get("enc_dilations", (1, 1, 1, 1, 1)), "dec_dilations": sec.get("dec_dilations",
                                                                                              (1, 1, 1, 1)),
    }
    upsample = sec.get("upsample_cfg", {"type": "InterpConv"})
    if dict(upsample) != {"type": "InterpConv"}:
        sec.fail("upsample_cfg", upsample, "segrt's UNet upsamples with MMSeg's default InterpConv")
    for key in ("conv_cfg", "dcn", "plugins"):
        sec.expect(key, None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "num_stages"))
    return "unet", kwargs


_VIT_DEFAULTS = {  # MMSeg VisionTransformer's settings that segrt's takes under the same names
    "img_size": 224, "patch_size": 16, "patch_pad": "corner", "in_channels": 3, "embed_dims": 768, "num_layers": 12,
    "num_heads": 12, "mlp_ratio": 4, "out_indices": -1, "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0, "with_cls_token": True, "output_cls_token": False, "patch_norm": False,
    "patch_bias": False, "pre_norm": False, "final_norm": False, "interpolate_mode": "bicubic", "num_fcs": 2,
}


def _vit(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    try:
        from training.models.zoo.vit import VIT_VARIANTS
    except ImportError:  # the ViT family is not in this build
        VIT_VARIANTS = {}
    kwargs = {k: sec.get(k, d) for k, d in _VIT_DEFAULTS.items()}
    if isinstance(kwargs["img_size"], tuple) and len(set(kwargs["img_size"])) == 1:
        kwargs["img_size"] = kwargs["img_size"][0]
    sec.expect("out_origin", False, (False,))
    sec.get("frozen_exclude", None)  # training-only
    _act(sec, "act_cfg", "GELU", ("GELU",))
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "LN"}, part, allowed=("LN",))
    dims = (kwargs["embed_dims"], kwargs["num_layers"], kwargs["num_heads"])
    variant = next((v for v, arch in VIT_VARIANTS.items() if tuple(arch) == dims), "base")
    _backbone_checks(sec, spec, part, kwargs, ("patch_size", "embed_dims", "num_layers", "num_heads",
                                                "interpolate_mode", "with_cls_token", "output_cls_token",
                                                "final_norm", "in_channels"))
    return f"vit-{variant}", kwargs


def _inner(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    """The backbone nested in a wrapper's ``backbone_cfg`` (BiSeNetV1's context path, STDC's STDCNet)."""
    inner = _Section(dict(sec.get("backbone_cfg")), sec.key("backbone_cfg"))
    mapper = BACKBONES.get(inner.type)
    if mapper is None or mapper in (_bisenetv1, _stdc_context):
        inner.fail("type", inner.type, f"unsupported backbone; segrt converts {sorted(BACKBONES)}")
    name, kwargs = mapper(inner, spec, part)
    inner.finish()
    return name, kwargs


def _bisenetv1(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    name, kwargs = _inner(sec, spec, lambda m: part(m).context_path.backbone)
    head = spec.model.head_kwargs
    head["spatial_channels"] = list(sec.get("spatial_channels", (64, 64, 64, 128)))
    head["fusion_channels"] = sec.get("out_channels", 256)
    context = sec.get("context_channels", (128, 256, 512))
    spec.check(sec.key("context_channels"), context, lambda m: (part(m).context_path.conv_head16.conv.out_channels,
                                                                *part(m).context_path.backbone.out_channels[2:]))
    spec.check(sec.key("in_channels"), sec.get("in_channels", 3), lambda m: part(m).in_channels)
    sec.expect("out_indices", (0, 1, 2), ((0, 1, 2),))
    sec.expect("align_corners", False, (False,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    return name, kwargs


def _bisenetv2(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "detail_channels": sec.get("detail_channels", (64, 64, 128)),
        "semantic_channels": sec.get("semantic_channels", (16, 32, 64, 128)),
        "semantic_expansion_ratio": sec.get("semantic_expansion_ratio", 6),
        "bga_channels": sec.get("bga_channels", 128), "align_corners": sec.get("align_corners", False),
    }
    sec.expect("out_indices", (0, 1, 2, 3, 4), ((0, 1, 2, 3, 4),))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    return "bisenetv2", kwargs


def _stdcnet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    variant = {"STDCNet1": "stdc1", "STDCNet2": "stdc2"}.get(sec.get("stdc_type"))
    if variant is None:
        sec.fail("stdc_type", sec.cfg.get("stdc_type"), "segrt supports 'STDCNet1' or 'STDCNet2'")
    kwargs = {"in_channels": sec.get("in_channels"), "channels": sec.get("channels"),
              "num_convs": sec.get("num_convs", 4)}
    sec.expect("bottleneck_type", None, ("cat",))
    sec.expect("with_final_conv", False, (False,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", _REQUIRED, part)
    _act(sec, "act_cfg", _REQUIRED, ("ReLU",))
    return variant, kwargs


def _stdc_context(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    name, kwargs = _inner(sec, spec, lambda m: part(m).backbone)
    head = spec.model.head_kwargs
    head["context_channels"] = sec.get("out_channels", 128)
    ffm = _Section(dict(sec.get("ffm_cfg", {"in_channels": 512, "out_channels": 256, "scale_factor": 4})),
                   sec.key("ffm_cfg"))
    head["fusion_channels"] = ffm.get("out_channels")
    spec.check(ffm.key("in_channels"), ffm.get("in_channels"),
               lambda m: part(m).out_channels[0] + part(m).out_channels[2])  # stage 2 + stride-8 context
    spec.check(ffm.key("scale_factor"), ffm.get("scale_factor", 4),  # squeeze ratio of the FFM's attention
               lambda m: part(m).ffm.conv0.conv.out_channels // part(m).ffm.attention[1].conv.out_channels)
    ffm.finish()
    last = sec.get("last_in_channels", (1024, 512))
    spec.check(sec.key("last_in_channels"), last, lambda m: tuple(part(m).backbone.out_channels[::-1][:2]))
    sec.expect("upsample_mode", "nearest", ("nearest",))
    sec.expect("align_corners", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    return name, kwargs


BackboneMapper = Callable[[_Section, ModelSpec, Part], tuple[str, dict[str, Any]]]
#: MMSeg backbone type -> mapper returning (segrt backbone name, backbone_kwargs).
BACKBONES: dict[str, BackboneMapper] = {
    "ResNet": _resnet, "ResNetV1c": _resnet, "ResNetV1d": _resnet, "MobileNetV2": _mobilenetv2,
    "MobileNetV3": _mobilenetv3, "MixVisionTransformer": _mit, "BiSeNetV1": _bisenetv1, "BiSeNetV2": _bisenetv2,
    "STDCNet": _stdcnet, "STDCContextPathNet": _stdc_context, "mmpretrain.ConvNeXt": _convnext, "ConvNeXt": _convnext,
    "UNet": _unet, "VisionTransformer": _vit,
}
