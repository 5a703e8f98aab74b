"""MMSegmentation checkpoint import: the safe config reader on MMSeg's own config files, the config -> segrt model
mapping, checkpoint loading (weights_only, MMEngine's extra objects), error reporting and the saved segrt checkpoint.

Checkpoints are written by the tests in MMSeg's format (``{"meta": {"dataset_meta": ...}, "state_dict": ...}`` with
a ``data_preprocessor`` buffer) from our own randomly initialised models: for these models our state-dict names are
MMSeg's. Models are shrunk by child configs inheriting the real ones, so everything runs in well under a second.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from tests.conftest import write_file as _write
from training.convert.mmseg import convert_mmseg, load_mmseg_checkpoint, save_converted
from training.convert.mmseg_config import read_config
from training.convert.mmseg_models import model_spec
from training.models import build, list_models

CONFIGS = Path(__file__).parent / "fixtures" / "mmseg_configs"


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


# ------------------------------------------------------------------------------------------------ conversion
# Child configs shrinking MMSeg's configs (ResNet-18 at 1/8 width, MobileNetV2 at 1/4): same structure, tiny.
R18 = "backbone=dict(depth=18, base_channels=8, stem_channels=8)"
VIT4 = "img_size=(64, 64), embed_dims=32, num_layers=4, num_heads=2, out_indices=(0, 1, 2, 3)"  # a 4-layer ViT
TINY = {
    "fcn": ("fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py",
            f"{R18}, decode_head=dict(in_channels=64, channels=16), auxiliary_head=dict(in_channels=32, channels=8)"),
    "pspnet": ("pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py",
               f"{R18}, decode_head=dict(in_channels=64, channels=16), auxiliary_head=dict(in_channels=32, "
               "channels=8)"),
    "deeplabv3": ("deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py",
                  f"{R18}, decode_head=dict(in_channels=64, channels=16, align_corners=True), "
                  "auxiliary_head=dict(in_channels=32, channels=8, align_corners=True)"),
    "deeplabv3plus": ("deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py",
                      f"{R18}, decode_head=dict(in_channels=64, channels=16, c1_in_channels=8, c1_channels=4), "
                      "auxiliary_head=dict(in_channels=32, channels=8)"),
    "upernet": ("upernet/upernet_r18_4xb4-80k_ade20k-512x512.py",
                f"{R18}, decode_head=dict(in_channels=[8, 16, 32, 64], channels=16), "
                "auxiliary_head=dict(in_channels=32, channels=8)"),
    "fpn": ("sem_fpn/fpn_r50_4xb2-80k_cityscapes-512x1024.py",
            f"{R18}, neck=dict(in_channels=[8, 16, 32, 64], out_channels=16), "
            "decode_head=dict(in_channels=[16, 16, 16, 16], channels=8)"),
    "pspnet-mobilenetv2": ("mobilenet_v2/mobilenet-v2-d8_pspnet_4xb2-80k_cityscapes-512x1024.py",
                           "backbone=dict(widen_factor=0.25), decode_head=dict(in_channels=80, channels=16), "
                           "auxiliary_head=dict(in_channels=24, channels=8)"),
    "ccnet": ("ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
              f"{R18}, decode_head=dict(in_channels=64, channels=16), auxiliary_head=dict(in_channels=32, channels=8)"),
    "danet": ("danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py",
              f"{R18}, decode_head=dict(in_channels=64, channels=16, pam_channels=2), "
              "auxiliary_head=dict(in_channels=32, channels=8)"),
    "ocrnet": ("ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py",  # a cascade: decode_head is a list
               f"{R18}, decode_head=[dict(_base_.model.decode_head[0], in_channels=32, channels=8), "
               "dict(_base_.model.decode_head[1], in_channels=64, channels=16, ocr_channels=8)]"),
    "fastfcn_psp": ("fastfcn/fastfcn_r50-d32_jpu_psp_4xb2-80k_cityscapes-512x1024.py",
                    f"{R18}, neck=dict(in_channels=(16, 32, 64), mid_channels=8), "
                    "decode_head=dict(in_channels=32, channels=8), auxiliary_head=dict(in_channels=32, channels=8)"),
    "bisenetv1": ("bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py",
                  "backbone=dict(backbone_cfg=dict(base_channels=8, stem_channels=8), context_channels=(16, 32, 64), "
                  "spatial_channels=(8, 8, 8, 16), out_channels=32), decode_head=dict(in_channels=32, channels=32), "
                  "auxiliary_head=[dict(h, in_channels=16, channels=8) for h in _base_.model.auxiliary_head]"),
    "bisenetv2": ("bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
                  "backbone=dict(detail_channels=(8, 8, 16), semantic_channels=(4, 8, 8, 16), bga_channels=16, "
                  "semantic_expansion_ratio=2), decode_head=dict(in_channels=16, channels=32), "
                  "auxiliary_head=[dict(h, in_channels=c, channels=2 * c) "
                  "for h, c in zip(_base_.model.auxiliary_head, (4, 8, 8, 16))]"),
    "stdc": ("stdc/stdc2_4xb12-80k_cityscapes-512x1024.py",
             "backbone=dict(backbone_cfg=dict(channels=(8, 8, 16, 32, 64)), last_in_channels=(64, 32), "
             "out_channels=16, ffm_cfg=dict(in_channels=32, out_channels=32)), "
             "decode_head=dict(in_channels=32, channels=32), "
             "auxiliary_head=[dict(h, in_channels=c, channels=8) for h, c in zip(_base_.model.auxiliary_head, "
             "(16, 16, 16))]"),
    "lraspp": ("mobilenet_v3/mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-512x1024.py",
               "decode_head=dict(channels=16)"),
    "segformer": ("segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
                  "backbone=dict(embed_dims=8, num_layers=[1, 1, 1, 1]), "
                  "decode_head=dict(in_channels=[8, 16, 40, 64], channels=16)"),
    "upernet-convnext": ("convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py",
                         "backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])), "
                         "decode_head=dict(in_channels=[8, 16, 32, 64], channels=16), "
                         "auxiliary_head=dict(in_channels=32, channels=8)"),
    "unet": ("unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py",
             "backbone=dict(base_channels=8), decode_head=dict(in_channels=8, channels=8), "
             "auxiliary_head=dict(in_channels=16, channels=8)"),
    "unet-aspp": ("unet/unet-s5-d16_deeplabv3_4xb4-40k_drive-64x64.py",
                  "backbone=dict(base_channels=8), decode_head=dict(in_channels=8, channels=4), "
                  "auxiliary_head=dict(in_channels=16, channels=8)"),
    "setr_naive": ("setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py",
                   f"backbone=dict({VIT4}), decode_head=dict(in_channels=32, channels=16), "
                   "auxiliary_head=[dict(h, in_channels=32, channels=16) for h in _base_.model.auxiliary_head]"),
    "setr_pup": ("setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py",
                 f"backbone=dict({VIT4}), decode_head=dict(in_channels=32, channels=8), "
                 "auxiliary_head=[dict(h, in_channels=32, channels=8) for h in _base_.model.auxiliary_head]"),
    "setr_mla": ("setr/setr_vit-l_mla_8xb2-160k_ade20k-512x512.py",
                 f"backbone=dict({VIT4}), neck=dict(in_channels=[32] * 4, out_channels=16), "
                 "decode_head=dict(in_channels=(16,) * 4, channels=32, mla_channels=8), "
                 "auxiliary_head=[dict(h, in_channels=16, channels=16) for h in _base_.model.auxiliary_head]"),
    "segmenter_mask": ("segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py",
                       "backbone=dict(img_size=(64, 64), embed_dims=32, num_layers=2, num_heads=2), "
                       "decode_head=dict(in_channels=32, channels=32, num_heads=2, embed_dims=32, num_layers=1)"),
    "segmenter_linear": ("segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py",
                         "backbone=dict(img_size=(64, 64), embed_dims=32, num_layers=2, num_heads=2), "
                         "decode_head=dict(in_channels=32, channels=32)"),
}
NO_AUX = {"fpn", "ocrnet", "lraspp", "segformer", "segmenter_mask", "segmenter_linear"}
ALIGNED = {"deeplabv3", "stdc"}  # align_corners=True in the (tiny) config


def _tiny_config(tmp_path: Path, case: str) -> Path:
    base, model = TINY[case]
    return _write(tmp_path / f"{case}.py", f"_base_ = {str(CONFIGS / base)!r}\nmodel = dict({model})\n")


def _randomize(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name
                        else torch.randn(t.shape, generator=g) * 0.3)


def _mmseg_checkpoint(tmp_path: Path, config: Path, **spec_kw) -> tuple[Path, torch.nn.Module]:
    """Our model built from the config with random weights, saved in MMSeg 1.x's checkpoint layout."""
    spec = model_spec(read_config(config)["model"], **spec_kw)
    m = spec.model
    torch.manual_seed(0)
    model = build(m.name, num_classes=spec.num_classes, backbone=m.backbone, backbone_kwargs=m.backbone_kwargs,
                  aux=m.aux, **m.head_kwargs).eval()
    _randomize(model)
    state = dict(model.state_dict())
    state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    classes = tuple(f"c{i}" for i in range(spec.num_classes))
    meta = {"mmseg_version": "1.2.2", "iter": 80000,
            "dataset_meta": {"classes": classes, "palette": [[i, 2 * i % 256, 7] for i in range(len(classes))]}}
    path = tmp_path / "mmseg.pth"
    torch.save({"meta": meta, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path, model


@pytest.mark.parametrize("case", sorted(TINY))
def test_convert_matches_the_source_model(tmp_path, case):
    if case.split("-")[0] not in list_models():
        pytest.skip(f"model {case.split('-')[0]!r} is not registered in this build")
    config = _tiny_config(tmp_path, case)
    ckpt, source = _mmseg_checkpoint(tmp_path, config)
    model, report = convert_mmseg(ckpt, config)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    assert not model.training
    expected_name = case.split("-")[0]
    assert report.model["name"] == expected_name and report.num_classes == source.num_classes
    assert report.classes[:2] == ["c0", "c1"] and report.palette[1] == [1, 2, 7]
    dp = read_config(config)["model"]["data_preprocessor"]  # Segmenter's is 127.5 / 127.5
    assert report.mean == list(dp["mean"]) and report.std == list(dp["std"])
    assert report.dropped_keys == ["data_preprocessor.mean"]
    assert report.params == sum(p.numel() for p in source.parameters())
    assert report.align_corners is (case in ALIGNED) and model.align_corners is (case in ALIGNED)
    has_aux = case not in NO_AUX
    assert report.model["aux"] is has_aux and (model.auxiliary_head is not None) is has_aux


def test_mapping_of_a_full_size_config():
    spec = model_spec(read_config(CONFIGS / "upernet" / "upernet_r18_4xb4-80k_ade20k-512x512.py")["model"])
    assert spec.model.name == "upernet" and spec.model.backbone == "resnet18" and spec.num_classes == 150
    assert spec.model.backbone_kwargs["strides"] == (1, 2, 2, 2)
    assert spec.model.head_kwargs == {"channels": 512, "pool_scales": [1, 2, 3, 6], "dropout_ratio": 0.1,
                                      "align_corners": False, "aux_channels": 256}


# Parameter counts of the real MMSeg 1.2.2 models built from these configs (mmseg.models, counted outside the suite).
MMSEG_PARAMS = {
    "pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py": 12_790_086,
    "upernet/upernet_r18_4xb4-80k_ade20k-512x512.py": 41_503_372,
    "deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py": 43_589_878,
    "deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py": 12_468_962,
    "mobilenet_v2/mobilenet-v2-d8_deeplabv3plus_4xb2-80k_cityscapes-512x1024.py": 15_244_374,
    "ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py": 49_826_055,
    "danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py": 49_846_574,
    "ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py": 55_516_294,
    "fastfcn/fastfcn_r50-d32_jpu_psp_4xb2-80k_cityscapes-512x1024.py": 68_711_046,
    "bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py": 13_425_721,
    "bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py": 14_804_255,
    "mobilenet_v3/mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-512x1024.py": 1_140_787,
    "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py": 3_753_718,
    "convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py": 60_242_636,  # MMSeg + mmpretrain
    "unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py": 29_060_676,
    "setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py": 305_557_592,
    "setr/setr_vit-l_mla_8xb2-160k_ade20k-512x512.py": 309_569_262,
    "segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py": 6_713_196,
    "segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py": 22_040_982,
}


@pytest.mark.parametrize("config", sorted(MMSEG_PARAMS))
def test_full_size_models_have_mmseg_parameter_counts(config):
    try:
        spec = model_spec(read_config(CONFIGS / config)["model"])
    except ValueError as e:
        if "not registered" in str(e):
            pytest.skip(str(e))
        raise
    m = spec.model
    with torch.device("meta"):
        model = build(m.name, num_classes=spec.num_classes, backbone=m.backbone, backbone_kwargs=m.backbone_kwargs,
                      aux=m.aux, **m.head_kwargs)
    spec.verify(model)
    assert sum(p.numel() for p in model.parameters()) == MMSEG_PARAMS[config]


def test_saved_checkpoint_rebuilds_for_export(tmp_path):
    from training.export import load_trained

    config = _tiny_config(tmp_path, "pspnet")
    ckpt, _ = _mmseg_checkpoint(tmp_path, config)
    model, report = convert_mmseg(ckpt, config)
    out = save_converted(model, report, tmp_path / "out" / "converted.pt")
    assert out.is_file() and not list(out.parent.glob(".*tmp*"))
    rebuilt, meta = load_trained(out)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert meta["classes"] == report.classes and meta["output_stride"] == 8
    assert meta["input_size"] == [512, 512] and meta["model"] == "pspnet_resnet18"
    saved = torch.load(out, weights_only=True)
    assert saved["converted_from"]["format"] == "mmseg" and saved["config"]["data"]["mean"] == tuple(report.mean)


def test_classes_from_the_dataset_type_without_meta(tmp_path):
    config = _tiny_config(tmp_path, "fcn")
    _, source = _mmseg_checkpoint(tmp_path, config)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, bare)  # DDP prefix, no meta
    model, report = convert_mmseg(bare, config, input_size=(256, 512))
    assert report.classes[:3] == ["road", "sidewalk", "building"] and report.palette[0] == [128, 64, 128]
    assert report.input_size == [256, 512] and report.dropped_keys == []


# ------------------------------------------------------------------------------------------------------ errors
def _rewrite(path: Path, edit) -> Path:
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt["state_dict"])
    torch.save(ckpt, path)
    return path


def test_weight_mismatches_are_listed(tmp_path):
    config = _tiny_config(tmp_path, "fcn")
    ckpt, _ = _mmseg_checkpoint(tmp_path, config)

    def edit(sd):
        del sd["decode_head.conv_seg.bias"]
        sd["decode_head.extra.weight"] = torch.zeros(1)
        sd["backbone.stem.0.weight"] = torch.zeros(5, 3, 3, 3)

    with pytest.raises(ValueError) as err:
        convert_mmseg(_rewrite(ckpt, edit), config)
    msg = str(err.value)
    assert "missing keys 1 ['decode_head.conv_seg.bias']" in msg
    assert "unexpected keys 1 ['decode_head.extra.weight']" in msg
    assert "backbone.stem.0.weight: checkpoint (5, 3, 3, 3) vs model (4, 3, 3, 3)" in msg


def test_num_classes_mismatch_is_a_shape_error(tmp_path):
    config = _tiny_config(tmp_path, "fcn")
    ckpt, _ = _mmseg_checkpoint(tmp_path, config)
    other = _write(tmp_path / "other.py", f"_base_ = {str(config)!r}\nmodel = dict(decode_head=dict(num_classes=7), "
                                          "auxiliary_head=dict(num_classes=7))\n")
    with pytest.raises(ValueError, match=r"decode_head\.conv_seg\.weight: checkpoint \(19, 16, 1, 1\) vs model"):
        convert_mmseg(ckpt, other)


@pytest.mark.parametrize("model_edit, match", [
    ("decode_head=dict(type='NLHead')", r"model\.decode_head\.type='NLHead': unsupported decode head"),
    ("backbone=dict(type='ResNeSt')", r"model\.backbone\.type='ResNeSt': unsupported backbone"),
    ("backbone=dict(style='caffe')", r"model\.backbone\.style='caffe'"),
    ("backbone=dict(norm_cfg=dict(type='GN', num_groups=2))", r"model\.backbone\.norm_cfg\.type='GN'"),
    ("decode_head=dict(norm_cfg=dict(type='BN', eps=1e-3))", r"model\.decode_head\.norm_cfg\.eps=0\.001"),
    ("decode_head=dict(act_cfg=dict(type='GELU'))", r"model\.decode_head\.act_cfg\.type='GELU'"),
    ("decode_head=dict(in_index=2)", r"model\.decode_head\.in_index=2 \(segrt's 'fcn' builds 3\)"),
    ("decode_head=dict(out_channels=1)", r"model\.decode_head\.out_channels=1"),
    ("decode_head=dict(sampler=None, upsample_x=2)", r"cannot build setting\(s\) upsample_x=2"),
    ("auxiliary_head=dict(num_convs=2)", r"model\.auxiliary_head\.num_convs=2 .*drop_aux=True"),
])
def test_unsupported_settings_name_the_key(tmp_path, model_edit, match):
    config = _write(tmp_path / "c.py", f"_base_ = {str(_tiny_config(tmp_path, 'fcn'))!r}\nmodel = dict({model_edit})\n")
    with pytest.raises(ValueError, match=match):
        spec = model_spec(read_config(config)["model"])
        m = spec.model
        spec.verify(build(m.name, num_classes=spec.num_classes, backbone=m.backbone,
                          backbone_kwargs=m.backbone_kwargs, aux=m.aux, **m.head_kwargs))


def test_real_configs_segrt_cannot_build():
    cfg = read_config(CONFIGS / "deeplabv3" / "deeplabv3_r101-d16-mg124_4xb2-80k_cityscapes-512x1024.py")
    with pytest.raises(ValueError, match=r"model\.backbone\.multi_grid=\(1, 2, 4\)"):
        model_spec(cfg["model"])


def test_auxiliary_head_can_be_dropped(tmp_path):
    # FCN-D6 dilates its auxiliary head too, which segrt's fcn builder does not: convert without it.
    base = CONFIGS / "fcn" / "fcn-d6_r50-d16_4xb2-40k_cityscapes-512x1024.py"
    config = _write(tmp_path / "d6.py", f"_base_ = {str(base)!r}\n"
                                        f"model = dict({R18}, decode_head=dict(in_channels=64, channels=16), "
                                        "auxiliary_head=dict(in_channels=32, channels=8))\n")
    with pytest.raises(ValueError, match=r"model\.auxiliary_head\.dilation=6 .*drop_aux=True"):
        spec = model_spec(read_config(config)["model"])
        m = spec.model
        spec.verify(build(m.name, num_classes=19, backbone=m.backbone, backbone_kwargs=m.backbone_kwargs, aux=m.aux,
                          **m.head_kwargs))
    ckpt, source = _mmseg_checkpoint(tmp_path, config, drop_aux=True)
    _rewrite(ckpt, lambda sd: sd.update({"auxiliary_head.conv_seg.weight": torch.zeros(19, 8, 1, 1)}))
    model, report = convert_mmseg(ckpt, config, drop_aux=True)
    assert model.auxiliary_head is None and "auxiliary_head.conv_seg.weight" in report.dropped_keys
    assert report.model["head_kwargs"]["dilation"] == 6
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_arbitrary_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"x": _Evil()}, "state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match=r"refused to unpickle \['builtins.print'\]"):
        load_mmseg_checkpoint(path)
    assert "never run" not in capsys.readouterr().out
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_mmseg_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        load_mmseg_checkpoint(tmp_path / "absent.pth")


def test_mmengine_runner_objects_are_loaded_inert(tmp_path, monkeypatch):
    # MMEngine's runner pickles a MessageHub state of HistoryBuffer objects beside the weights: fake the class
    # under its real module path so the pickle names it exactly as a real checkpoint does.
    mod = types.ModuleType("mmengine.logging.history_buffer")
    calls = []

    class HistoryBuffer:
        def __init__(self) -> None:
            self.data = [1.0, 2.0]

        def __setstate__(self, state):
            calls.append(state)  # must not run on load

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = mod.__name__, "HistoryBuffer"
    mod.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging", mod.__name__):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    path = tmp_path / "runner.pth"
    torch.save({"meta": {"dataset_meta": {"classes": ("a", "b")}}, "state_dict": {"w": torch.ones(2)},
                "message_hub": {"log_scalars": {"loss": HistoryBuffer()}}}, path)
    monkeypatch.delitem(sys.modules, mod.__name__)
    state, meta = load_mmseg_checkpoint(path)
    assert torch.equal(state["w"], torch.ones(2)) and meta["dataset_meta"]["classes"] == ("a", "b")
    assert calls == []


def test_config_from_the_checkpoint_meta(tmp_path):
    # MMEngine's runner stores the dumped config as meta["cfg"]: then no config file is needed.
    config = _tiny_config(tmp_path, "upernet")
    ckpt, source = _mmseg_checkpoint(tmp_path, config)
    saved = torch.load(ckpt, weights_only=True)
    saved["meta"]["cfg"] = config.read_text()
    torch.save(saved, ckpt)
    model, report = convert_mmseg(ckpt)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    assert report.config == "checkpoint meta" and "cfg" not in report.mmseg_meta
    del saved["meta"]["cfg"]
    torch.save(saved, ckpt)
    with pytest.raises(ValueError, match="no config given"):
        convert_mmseg(ckpt)


def test_half_precision_weights_and_missing_bn_counters(tmp_path):
    config = _tiny_config(tmp_path, "pspnet")
    ckpt, source = _mmseg_checkpoint(tmp_path, config)

    def edit(sd):
        for k in [k for k in sd if k.endswith("num_batches_tracked")]:
            del sd[k]
        for k in sd:
            if sd[k].is_floating_point() and k.startswith("decode_head."):
                sd[k] = sd[k].half()

    model, report = convert_mmseg(_rewrite(ckpt, edit), config)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any("num_batches_tracked" in n for n in report.notes) and any("float16" in n for n in report.notes)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("config, size", [
    ("bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py", [1024, 2048]),  # Cityscapes' image size
    ("pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py", [512, 512]),  # short side 512 only: the crop
    ("unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py", [565, 584]),  # landscape: pass input_size for portrait
])
def test_inference_size_from_the_test_pipeline(config, size):
    from training.convert.mmseg import _input_size

    assert _input_size(read_config(CONFIGS / config), []) == size
