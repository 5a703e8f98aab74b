""":func:`model_spec` maps an MMSeg config's ``model`` dict (from :func:`training.convert.mmseg_config.read_config`)
onto a segrt builder (``training.models.build``): tables :data:`~training.convert.mmseg_backbones.BACKBONES`,
:data:`HEADS` and :data:`NECKS` say, per MMSeg type, which settings become builder options; every other setting is
checked against the built model (:meth:`~training.convert.mmseg_spec.ModelSpec.verify`), so anything segrt cannot
reproduce is a ``ValueError`` naming the config key and value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from training.config import ModelCfg
from training.convert.mmseg_backbones import BACKBONES
from training.convert.mmseg_spec import (
    _BN,
    _NO_ATTR,
    _REQUIRED,
    ModelSpec,
    Part,
    _act,
    _norm,
    _options,
    _Section,
    _takes_sequence,
)


# ----------------------------------------------------------------------------------------------------------- heads
@dataclass(frozen=True)
class HeadType:
    """An MMSeg decode-head type: its own settings with MMSeg's defaults (``_REQUIRED``: must be given), whether it
    reads several levels, the activation/norm types of segrt's version, and, as an auxiliary head, the builder
    keyword its settings map to (``aux_options``) and the builder flag that adds it (``aux_flag``)."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    multi: bool = False
    act: tuple[Any, ...] = ("ReLU",)
    norm: tuple[Any, ...] = _BN
    aux_options: Mapping[str, str] = field(default_factory=dict)
    aux_flag: str | None = None
    norm_default: Any = None  # the head's own default norm_cfg (BaseDecodeHead's is None)
    act_default: str = "ReLU"
    # Settings a mismatch of which shows in the weights (shapes, extra keys) or only matters in training: they
    # need no attribute on segrt's module.
    trusted: frozenset[str] = frozenset()
    norm_layer: bool = False  # has MMSeg's ``norm_layer`` (a LayerNorm on the input tokens)


_FCN = {"num_convs": 2, "kernel_size": 3, "concat_input": True, "dilation": 1}
HEADS: dict[str, HeadType] = {
    "FCNHead": HeadType(_FCN),
    "PSPHead": HeadType({"pool_scales": (1, 2, 3, 6)}),
    "ASPPHead": HeadType({"dilations": (1, 6, 12, 18)}),
    "DepthwiseSeparableASPPHead": HeadType(
        {"dilations": (1, 6, 12, 18), "c1_in_channels": _REQUIRED, "c1_channels": _REQUIRED}),
    "UPerHead": HeadType({"pool_scales": (1, 2, 3, 6)}, multi=True),
    "FPNHead": HeadType({"feature_strides": _REQUIRED}, multi=True),
    "CCHead": HeadType({"recurrence": 2, "kernel_size": 3, "concat_input": True, "dilation": 1}),
    "DAHead": HeadType({"pam_channels": _REQUIRED}),
    "OCRHead": HeadType({"ocr_channels": _REQUIRED, "scale": 1}),
    "LRASPPHead": HeadType({"branch_channels": (32, 64)}, multi=True),
    "SegformerHead": HeadType({"interpolate_mode": "bilinear"}, multi=True),
    "STDCHead": HeadType({**_FCN, "boundary_threshold": 0.1}, aux_options={"boundary_threshold": "boundary_threshold"},
                         aux_flag="boundary_head"),
    "SETRUPHead": HeadType({"num_convs": 1, "up_scale": 4, "kernel_size": 3}, norm_layer=True,
                           aux_options={"num_convs": "aux_num_convs", "up_scale": "aux_up_scale",
                                        "kernel_size": "aux_kernel_size"}),
    "SETRMLAHead": HeadType({"mla_channels": 128, "up_scale": 4}, multi=True),
    "SegmenterMaskTransformerHead": HeadType(
        {"num_layers": _REQUIRED, "num_heads": _REQUIRED, "embed_dims": _REQUIRED, "mlp_ratio": 4,
         "drop_path_rate": 0.1, "drop_rate": 0.0, "attn_drop_rate": 0.0, "num_fcs": 2, "qkv_bias": True},
        act=("GELU",), act_default="GELU", norm=("LN",), norm_default={"type": "LN"},
        trusted=frozenset({"mlp_ratio", "drop_path_rate", "drop_rate", "attn_drop_rate", "num_fcs", "qkv_bias"})),
}
# Values our head modules do not keep as attributes, read from their layers instead: (head type, key) -> getter.
HEAD_GETTERS: dict[tuple[str, str], Callable[[nn.Module], Any]] = {
    ("FCNHead", "dilation"): lambda h: h.convs[0].conv.dilation[0] if h.num_convs else 1,
    ("STDCHead", "dilation"): lambda h: h.convs[0].conv.dilation[0] if h.num_convs else 1,
    ("CCHead", "dilation"): lambda h: h.convs[0].conv.dilation[0],
    ("DepthwiseSeparableASPPHead", "c1_channels"): lambda h: h.c1_bottleneck.conv.out_channels
    if h.c1_bottleneck is not None else 0,
    ("SegformerHead", "interpolate_mode"): lambda h: "bilinear",  # segrt's SegformerHead resizes bilinearly
    ("SETRUPHead", "num_convs"): lambda h: len(h.up_convs),
    ("SETRUPHead", "up_scale"): lambda h: h.up_convs[0][1].scale,
    ("SETRUPHead", "kernel_size"): lambda h: h.up_convs[0][0].conv.kernel_size[0],
    ("SETRMLAHead", "up_scale"): lambda h: h.up_scale,
    ("SegmenterMaskTransformerHead", "num_layers"): lambda h: len(h.layers),
    ("SegmenterMaskTransformerHead", "embed_dims"): lambda h: h.dec_proj.out_features,
}


@dataclass(frozen=True)
class Rule:
    """Which segrt builder an MMSeg model maps to: its decode head type(s) (several: a cascade), neck type and,
    optionally, backbone types; ``stages`` renames settings per cascade stage (config key -> builder keyword;
    None: every setting the builder takes under the same name); ``fixed`` are builder options the rule implies;
    ``when`` narrows the rule by the decode head dicts."""

    model: str
    heads: tuple[str, ...]
    neck: str | None = None
    backbones: tuple[str, ...] = ()
    stages: tuple[Mapping[str, str] | None, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)  # builder options the rule sets (U-Net's decoder)
    when: Callable[[list[dict[str, Any]]], bool] | None = None  # also tests the decode head dicts


#: First match wins, so backbone-specific rules come first.
RULES: list[Rule] = [
    Rule("unet", ("FCNHead",), backbones=("UNet",), fixed={"decoder": "fcn"}),
    Rule("unet", ("ASPPHead",), backbones=("UNet",), fixed={"decoder": "aspp"}),
    Rule("unet", ("PSPHead",), backbones=("UNet",), fixed={"decoder": "psp"}),
    Rule("bisenetv1", ("FCNHead",), backbones=("BiSeNetV1",)),
    Rule("bisenetv2", ("FCNHead",), backbones=("BiSeNetV2",)),
    Rule("stdc", ("FCNHead",), backbones=("STDCContextPathNet",)),
    Rule("segmenter_linear", ("FCNHead",), backbones=("VisionTransformer",)),
    Rule("fcn", ("FCNHead",)),
    Rule("pspnet", ("PSPHead",)),
    Rule("fastfcn_psp", ("PSPHead",), neck="JPU"),
    Rule("deeplabv3", ("ASPPHead",)),
    Rule("fastfcn_aspp", ("ASPPHead",), neck="JPU"),
    Rule("deeplabv3plus", ("DepthwiseSeparableASPPHead",)),
    Rule("upernet", ("UPerHead",)),
    Rule("fpn", ("FPNHead",), neck="FPN"),
    Rule("ccnet", ("CCHead",)),
    Rule("danet", ("DAHead",)),
    Rule("ocrnet", ("FCNHead", "OCRHead"), stages=({"channels": "fcn_channels"}, None)),
    Rule("lraspp", ("LRASPPHead",)),
    Rule("segformer", ("SegformerHead",)),
    Rule("segmenter_mask", ("SegmenterMaskTransformerHead",)),
    Rule("setr_naive", ("SETRUPHead",), when=lambda heads: heads[0].get("num_convs", 1) == 1),
    Rule("setr_pup", ("SETRUPHead",)),
    Rule("setr_mla", ("SETRMLAHead",), neck="MLANeck"),
]


def _head(sec: _Section, spec: ModelSpec, head: Part, options: Mapping[str, str], aux: bool = False) -> int:
    """Read one decode/auxiliary head dict: settings in ``options`` (config key -> builder keyword) go to the
    builder, every setting is checked against the built head ``head(model)``. Returns its num_classes."""
    kind = HEADS.get(sec.type)
    if kind is None:
        sec.fail("type", sec.type, f"unsupported head type; segrt converts {sorted(HEADS)}")
    num_classes = sec.get("num_classes")
    spec.check(sec.key("num_classes"), num_classes, lambda m: head(m).num_classes)
    out_channels = sec.get("out_channels", None)
    if out_channels not in (None, num_classes):
        sec.fail("out_channels", out_channels, f"only out_channels == num_classes ({num_classes}) is supported "
                                               "(no binary sigmoid output)")
    sec.get("threshold", None)
    sec.expect("input_transform", "multiple_select" if kind.multi else None,
               ("multiple_select",) if kind.multi else (None,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", kind.norm_default, head, kind.norm)
    _act(sec, "act_cfg", kind.act_default, kind.act)
    if kind.norm_layer:
        _norm(sec, spec, "norm_layer", {"type": "LN", "eps": 1e-6}, lambda m: head(m).norm, ("LN",))
    sec.get("init_std", None)  # training-only (initialisation)
    for key, default in {**_BASE_HEAD, **kind.defaults}.items():
        value = sec.get(key, default)
        if aux and key == "align_corners":
            continue  # an auxiliary head's align_corners only resizes its logits for its training loss
        getter = HEAD_GETTERS.get((sec.type, key), lambda h, key=key: getattr(h, key, _NO_ATTR))
        if key in options:
            spec.model.head_kwargs[options[key]] = list(value) if isinstance(value, tuple) else value
        spec.check(sec.key(key), value, lambda m, g=getter: g(head(m)), optional=key in options or key in kind.trusted)
    sec.finish()
    return num_classes


# BaseDecodeHead's settings and MMSeg's defaults (norm_cfg/act_cfg/conv_cfg/input_transform handled apart).
_BASE_HEAD = {"in_channels": _REQUIRED, "channels": _REQUIRED, "in_index": -1, "dropout_ratio": 0.1,
              "align_corners": False}


# ----------------------------------------------------------------------------------------------------------- necks
def _fpn_neck(sec: _Section, spec: ModelSpec) -> None:
    in_channels = sec.get("in_channels")
    spec.model.head_kwargs["neck_channels"] = sec.get("out_channels")
    spec.check(sec.key("in_channels"), in_channels, lambda m: m.neck.in_channels)
    spec.check(sec.key("out_channels"), spec.model.head_kwargs["neck_channels"], lambda m: m.neck.out_channels)
    sec.expect("num_outs", len(in_channels), (len(in_channels),))
    sec.expect("start_level", 0, (0,))
    sec.expect("end_level", -1, (-1, len(in_channels) - 1))
    for key in ("add_extra_convs", "extra_convs_on_inputs", "relu_before_extra_convs", "no_norm_on_lateral"):
        sec.expect(key, False, (False,))
    for key in ("conv_cfg", "norm_cfg", "act_cfg"):
        sec.expect(key, None, (None,))
    upsample = sec.get("upsample_cfg", {"mode": "nearest"})
    if dict(upsample) != {"mode": "nearest"}:
        sec.fail("upsample_cfg", upsample, "segrt's FPN upsamples with nearest interpolation to the next size")


def _jpu_neck(sec: _Section, spec: ModelSpec) -> None:
    in_channels = sec.get("in_channels", (512, 1024, 2048))
    spec.model.head_kwargs["neck_channels"] = sec.get("mid_channels", 512)
    spec.model.head_kwargs["jpu_dilations"] = list(sec.get("dilations", (1, 2, 4, 8)))
    end = sec.get("end_level", -1)
    spec.check(sec.key("in_channels"), in_channels, lambda m: m.neck.in_channels)
    spec.check(sec.key("start_level"), sec.get("start_level", 0), lambda m: m.neck.start_level)
    spec.check(sec.key("end_level"), len(in_channels) if end == -1 else end, lambda m: m.neck.end_level)
    spec.check(sec.key("align_corners"), sec.get("align_corners", False), lambda m: m.neck.align_corners)
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, lambda m: m.neck)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))


def _mla_neck(sec: _Section, spec: ModelSpec) -> None:
    spec.check(sec.key("in_channels"), sec.get("in_channels", (1024, 1024, 1024, 1024)), lambda m: m.neck.in_channels)
    spec.model.head_kwargs["neck_channels"] = sec.get("out_channels", 256)
    spec.check(sec.key("out_channels"), spec.model.head_kwargs["neck_channels"], lambda m: m.neck.out_channels)
    _norm(sec, spec, "norm_layer", {"type": "LN", "eps": 1e-6}, lambda m: m.neck, ("LN",))
    _norm(sec, spec, "norm_cfg", None, lambda m: m.neck)
    _act(sec, "act_cfg", None, ("ReLU",))


#: MMSeg neck type -> reader (sets builder options and checks).
NECKS: dict[str, Callable[[_Section, ModelSpec], None]] = {"FPN": _fpn_neck, "JPU": _jpu_neck, "MLANeck": _mla_neck}


# ------------------------------------------------------------------------------------------------------ the model
def _auxiliary(value: Any, spec: ModelSpec, drop_aux: bool) -> None:
    options = _options(spec.model.name)
    flags = {k.aux_flag: t for t, k in HEADS.items() if k.aux_flag and k.aux_flag in options}
    heads = [] if value is None else list(value) if isinstance(value, list | tuple) else [value]
    for flag, kind in flags.items():
        spec.model.head_kwargs[flag] = any(isinstance(h, dict) and h.get("type") == kind for h in heads)
    if not heads or drop_aux:
        spec.model.aux = False
        if heads:
            spec.notes.append("auxiliary head(s) dropped (drop_aux=True)")
        return
    spec.model.aux = True
    widths = [h.get("channels") for h in heads if isinstance(h, dict)]
    aux_opts: dict[str, str] = {}
    if "aux_channels" in options:
        if _takes_sequence(spec.model.name, "aux_channels"):
            spec.model.head_kwargs["aux_channels"] = widths
        elif len(set(widths)) == 1:
            aux_opts["channels"] = "aux_channels"

    def count(m: nn.Module) -> int:
        a = m.auxiliary_head
        return 0 if a is None else len(a) if isinstance(a, nn.ModuleList) else 1

    spec.check("model.auxiliary_head (number of heads)", len(heads), count)
    for i, h in enumerate(heads):
        where = "model.auxiliary_head" + (f"[{i}]" if isinstance(value, list | tuple) else "")
        getter = (lambda m, i=i: m.auxiliary_head[i]) if len(heads) > 1 else (lambda m: m.auxiliary_head)
        kind = HEADS.get(h.get("type")) if isinstance(h, dict) else None
        extra = {k: v for k, v in (kind.aux_options if kind else {}).items() if v in options}
        try:
            _head(_Section(h, where), spec, getter, {**aux_opts, **extra}, aux=True)
        except ValueError as e:
            raise ValueError(f"{e} (pass drop_aux=True to convert without the training-only auxiliary head)") from None


def _rule(heads: tuple[str, ...], neck: str | None, backbone: str, cfgs: list[dict[str, Any]]) -> Rule:
    from training.models import list_models

    for rule in RULES:
        if rule.heads == heads and rule.neck == neck and (not rule.backbones or backbone in rule.backbones) and \
                (rule.when is None or rule.when(cfgs)):
            if rule.model not in list_models():
                raise ValueError(f"model.decode_head.type={heads[-1]!r}: maps to segrt model {rule.model!r}, which "
                                 "is not registered in this build")
            return rule
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        key = "model.decode_head.type" if len(heads) == 1 else "model.decode_head[*].type"
        raise ValueError(f"{key}={unknown[0]!r}: unsupported decode head; segrt converts "
                         f"{sorted({h for r in RULES for h in r.heads})}")
    raise ValueError(f"model.decode_head.type={heads if len(heads) > 1 else heads[0]!r} with model.neck.type="
                     f"{neck!r} on model.backbone.type={backbone!r}: no segrt model has this combination (segrt "
                     f"converts: {', '.join(_describe(r) for r in RULES)})")


def _describe(rule: Rule) -> str:
    heads = "+".join(rule.heads)
    return f"{heads}" + (f" with {rule.neck}" if rule.neck else "") + (
        f" on {'/'.join(rule.backbones)}" if rule.backbones else "")


def model_spec(model: Mapping[str, Any], *, drop_aux: bool = False) -> ModelSpec:
    """Map an MMSeg ``model`` dict (from :func:`read_config`) onto a segrt builder; ``ValueError`` names the
    config key of anything that cannot be built. ``spec.verify(built_model)`` completes the checks."""
    sec = _Section(dict(model), "model")
    head_cfg = sec.get("decode_head")
    cascade = isinstance(head_cfg, list | tuple)
    sec.expect("type", "EncoderDecoder", ("CascadeEncoderDecoder",) if cascade else ("EncoderDecoder",))
    if cascade:
        sec.expect("num_stages", _REQUIRED, (len(head_cfg),))
    heads = [_Section(dict(h) if isinstance(h, dict) else h,
                      f"model.decode_head[{i}]" if cascade else "model.decode_head")
             for i, h in enumerate(head_cfg if cascade else [head_cfg])]
    neck = sec.get("neck", None)
    if neck is not None and not isinstance(neck, dict):
        sec.fail("neck", neck, "a list of necks is not supported")
    bb = _Section(dict(sec.get("backbone")), "model.backbone")
    rule = _rule(tuple(h.type for h in heads), (neck or {}).get("type"), bb.type, [h.cfg for h in heads])
    spec = ModelSpec(ModelCfg(name=rule.model, backbone="", backbone_kwargs={}, head_kwargs=dict(rule.fixed),
                              aux=False), num_classes=int(heads[-1].cfg.get("num_classes", 0)))
    mapper = BACKBONES.get(bb.type)
    if mapper is None:
        bb.fail("type", bb.type, f"unsupported backbone; segrt converts {sorted(BACKBONES)}")
    spec.model.backbone, spec.model.backbone_kwargs = mapper(bb, spec, lambda m: m.backbone)
    bb.finish()
    if neck is not None:
        neck_sec = _Section(dict(neck), "model.neck")
        NECKS[neck_sec.type](neck_sec, spec)
        neck_sec.finish()
    options = _options(rule.model)
    for i, h in enumerate(heads):
        stage = rule.stages[i] if rule.stages else None
        kind = HEADS[h.type]
        names = stage if stage is not None else {k: k for k in (*_BASE_HEAD, *kind.defaults)}
        getter = (lambda m, i=i: m.decode_head[i]) if cascade else (lambda m: m.decode_head)
        _head(h, spec, getter, {k: v for k, v in names.items() if v in options})
    spec.ignore_index = int(heads[-1].cfg.get("ignore_index", 255))
    _auxiliary(sec.get("auxiliary_head", None), spec, drop_aux)
    sec.get("data_preprocessor", None)
    sec.get("train_cfg", None)
    test_cfg = sec.get("test_cfg", None) or {}
    if test_cfg.get("mode", "whole") != "whole":
        spec.notes.append(f"model.test_cfg={test_cfg}: MMSeg evaluated this model with sliding windows; segrt runs it "
                          "on the whole (resized) image")
    sec.finish()
    return spec
