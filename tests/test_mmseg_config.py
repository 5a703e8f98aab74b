"""MMSegmentation's config files read safely (training.convert.mmseg_config): inheritance, ``_delete_``, variables,
mmengine's syntax, and never executing code; checked on the MMSeg 1.2.2 configs in tests/fixtures/mmseg_configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_file as _write
from training.convert.mmseg_config import ConfigError, Unevaluated, find_unevaluated, read_config
from training.convert.mmseg_models import model_spec

CONFIGS = Path(__file__).parent / "fixtures" / "mmseg_configs"


# ------------------------------------------------------------------------------------------------- config reader
def test_reader_reads_every_fixture_config():
    files = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)
    assert len(files) >= 15
    for path in files:
        cfg = read_config(path)
        assert isinstance(cfg["model"], dict), path
        assert find_unevaluated(cfg) == [], path


def test_reader_inheritance_and_variables():
    cfg = read_config(CONFIGS / "pspnet" / "pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py")
    m = cfg["model"]
    assert m["type"] == "EncoderDecoder" and m["pretrained"] == "open-mmlab://resnet18_v1c"
    assert m["backbone"]["depth"] == 18 and m["backbone"]["type"] == "ResNetV1c"
    assert m["backbone"]["dilations"] == (1, 1, 2, 4) and m["backbone"]["norm_cfg"] == {"type": "SyncBN",
                                                                                         "requires_grad": True}
    assert (m["decode_head"]["in_channels"], m["decode_head"]["channels"]) == (512, 128)
    assert m["decode_head"]["pool_scales"] == (1, 2, 3, 6)  # kept from the base: dicts merge recursively
    assert (m["auxiliary_head"]["in_channels"], m["auxiliary_head"]["channels"]) == (256, 64)
    assert m["data_preprocessor"]["size"] == (512, 1024) and m["data_preprocessor"]["mean"] == [123.675, 116.28,
                                                                                                103.53]
    assert cfg["crop_size"] == (512, 1024) and cfg["test_dataloader"] == cfg["val_dataloader"]
    tta = cfg["tta_pipeline"][1]["transforms"][0]  # a list comprehension over img_ratios
    assert [t["scale_factor"] for t in tta] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert cfg["train_cfg"]["max_iters"] == 80000 and cfg["default_scope"] == "mmseg"


def test_reader_delete_replaces_a_base_dict():
    cfg = read_config(CONFIGS / "mobilenet_v2" / "mobilenet-v2-d8_deeplabv3plus_4xb2-80k_cityscapes-512x1024.py")
    bb = cfg["model"]["backbone"]
    assert bb == {"type": "MobileNetV2", "widen_factor": 1.0, "strides": (1, 2, 2, 1, 1, 1, 1),
                  "dilations": (1, 1, 1, 2, 2, 4, 4), "out_indices": (1, 2, 4, 6),
                  "norm_cfg": {"type": "SyncBN", "requires_grad": True}}
    head = cfg["model"]["decode_head"]
    assert head["c1_in_channels"] == 24 and head["in_channels"] == 320 and head["dilations"] == (1, 12, 24, 36)


def test_reader_mmengine_features(tmp_path):
    # The same files read by mmengine's Config.fromfile give the same dict (checked outside the test suite).
    _write(tmp_path / "base" / "a.py", "norm = dict(type='BN', eps=1e-3)\nsize = (4, 8)\n"
                                       "model = dict(head=dict(ch=4, norm=norm, keep=1), lst=[1, 2, 3])\n")
    _write(tmp_path / "base" / "b.py", "runner = dict(iters=10)\n")
    cfg = read_config(_write(tmp_path / "cfgs" / "child.py", """
'''docstring'''
_base_ = ['../base/a.py', '../base/b.py']
crop = _base_.size
crop2 = {{_base_.size}}
double = [s * 2 for s in crop]
name = '{{ fileBasenameNoExtension }}'
tag = f"{name}-{crop[0]}x{crop[1]:03d}"
table = {k: v for k, v in zip(('a', 'b'), range(2))}
table.update(c=len(double))
model = dict(head=dict(ch=_base_.model.head.ch * 2), lst=[9], extra=dict(_delete_=True, x=1),
             norm2=dict(_delete_=True, type='LN'), neg=-1, total=sum(double) // 3, flag=not False and 2 > 1)
runner = dict(_delete_=True, epochs=1)
"""))
    assert cfg["crop"] == cfg["crop2"] == (4, 8) and cfg["double"] == [8, 16] and cfg["name"] == "child"
    assert cfg["tag"] == "child-4x008" and cfg["table"] == {"a": 0, "b": 1, "c": 2}
    m = cfg["model"]
    assert m["head"] == {"ch": 8, "norm": {"type": "BN", "eps": 1e-3}, "keep": 1}  # merged into the base
    assert m["lst"] == [9]  # lists replace
    assert m["extra"] == {"_delete_": True, "x": 1}  # as mmengine: _delete_ only pops when the base has the key
    assert (m["neg"], m["total"], m["flag"]) == (-1, 8, True)
    assert cfg["runner"] == {"epochs": 1} and cfg["norm"]["eps"] == 1e-3


def test_reader_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    cfg = read_config(_write(tmp_path / "evil.py", f"""
x = __import__('os').system('touch {marker}')
y = open('{marker}', 'w')
z = (lambda: 1)()
big = list(range(10 ** 9))
w = dict(a=x, b=2)
v = x + 1
model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', depth=x),
             decode_head=dict(type='FCNHead', in_channels=8, channels=8, num_classes=2))
"""))
    assert not marker.exists()
    for key in ("x", "y", "z", "big", "v"):
        assert isinstance(cfg[key], Unevaluated), key
    assert cfg["w"]["b"] == 2 and isinstance(cfg["w"]["a"], Unevaluated)
    with pytest.raises(ValueError, match=r"model\.backbone\.depth could not be read"):
        model_spec(cfg["model"])


@pytest.mark.parametrize("text, match", [
    ("import os\nmodel = dict()\n", "imports"),
    ("def f():\n    pass\n", "unsupported statement FunctionDef"),
    ("for i in range(3):\n    pass\n", "unsupported statement For"),
    ("model = dict(\n", "not valid Python"),
    ("_base_ = './missing.py'\n", "config file not found"),
    ("_base_ = './self.py'\n", "circular"),
    ("_base_ = ['./d1.py', './d2.py']\n", "more than one base"),
    ("_base_ = 'mmdet::faster_rcnn.py'\n", "another package"),
])
def test_reader_errors(tmp_path, text, match):
    _write(tmp_path / "d1.py", "a = 1\n")
    _write(tmp_path / "d2.py", "a = 2\n")
    with pytest.raises(ConfigError, match=match):
        read_config(_write(tmp_path / "self.py", text))


def test_reader_rejects_base_dict_over_a_value(tmp_path):
    _write(tmp_path / "base.py", "model = dict(backbone='resnet')\n")
    with pytest.raises(ConfigError, match="_delete_=True"):
        read_config(_write(tmp_path / "c.py", "_base_ = './base.py'\nmodel = dict(backbone=dict(type='X'))\n"))
