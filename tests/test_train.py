"""Training pieces: schedules, optimizer groups, AMP, non-finite loss handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.config import config_from_dict
from training.models import build
from training.optim import build_optimizer, lr_at, set_lr
from training.train import train


def test_schedules() -> None:
    assert lr_at(0, 100, 0.1, "poly", 1.0, 0.0) == pytest.approx(0.1)
    assert lr_at(50, 100, 0.1, "poly", 1.0, 0.0) == pytest.approx(0.05)
    assert lr_at(100, 100, 0.1, "poly", 0.9, 1e-4) == pytest.approx(1e-4)
    assert lr_at(50, 100, 0.1, "cosine", min_lr=0.0) == pytest.approx(0.05)
    assert lr_at(0, 100, 0.1, warmup_iters=10) < 1e-6
    assert lr_at(5, 100, 0.1, "poly", 1.0, 0.0, warmup_iters=10) == pytest.approx(0.5 * 0.095, rel=1e-3)
    with pytest.raises(ValueError, match="step"):
        lr_at(0, 10, 0.1, "step")


def test_optimizer_groups_and_head_multiplier() -> None:
    model = build("fcn", num_classes=3, backbone="resnet18", backbone_kwargs={"base_channels": 8, "stem_channels": 8})
    opt = build_optimizer(model, "adamw", 1e-3, 0.01, head_lr_mult=10.0)
    set_lr(opt, 1e-3)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([1e-3, 1e-2])
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(model, "lion", 1e-3, 0.0)


def _cfg(tmp: Path, **train: object) -> dict:
    return {
        "model": {"name": "fcn", "backbone": "resnet18", "backbone_kwargs": {"stem_channels": 8, "base_channels": 8}},
        "data": {"root": str(tmp / "data"), "synthetic": {"n_train": 4, "n_val": 2, "height": 64, "width": 128},
                 "input_size": [64, 128], "crop_size": [64, 128]},
        "train": {"iters": 2, "batch_size": 2, "eval_interval": 2, "checkpoint_interval": 1, **train},
        "work_dir": str(tmp / "work"),
    }


def test_bf16_amp_adamw_ohem_dice_run(tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(tmp_path, amp="bf16", optimizer="adamw", channels_last=True, lr=1e-3, clip_grad=1.0,
                                warmup_iters=1,
                                schedule="cosine", loss=[{"name": "ohem", "thresh": 0.7, "min_kept": 100},
                                                         {"name": "dice", "weight": 0.5}]))
    metrics = train(cfg, quiet=True)
    assert 0.0 <= metrics["mIoU"] <= 1.0
    assert load_checkpoint(tmp_path / "work" / "last.pt")["iter"] == 2


def test_non_finite_loss_stops_with_checkpoint(tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(tmp_path, lr=1e30, iters=20))
    with pytest.raises(FloatingPointError, match="last.pt"):
        train(cfg, quiet=True)
    ckpt = load_checkpoint(tmp_path / "work" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_bad_amp_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16"):
        train(config_from_dict(_cfg(tmp_path, amp="fp16")), quiet=True)


def test_uint8_augment_pipeline_and_named_dataset(tmp_path: Path) -> None:
    raw = _cfg(tmp_path)
    raw["data"].update(dataset="folder", dataset_kwargs={"skip_bad": True}, augment=[
        {"type": "RandomResize", "scale": [128, 64], "ratio_range": [0.8, 1.2]},
        {"type": "RandomCrop", "crop_size": [48, 96], "cat_max_ratio": 0.9},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PhotoMetricDistortion"},
        {"type": "Pad", "size": [48, 96]},
    ])
    metrics = train(config_from_dict(raw), quiet=True)
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_training_process_keeps_active_openmp_wait() -> None:
    """The engine's OMP_WAIT_POLICY=PASSIVE (good for inference) must not slow training processes down."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, engine.cli, training.train; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "None"


def test_ema_logs_and_plots(tmp_path: Path) -> None:
    train(config_from_dict(_cfg(tmp_path, ema=0.9, iters=4, eval_interval=2, checkpoint_interval=2)), quiet=True)
    work = tmp_path / "work"
    ckpt = load_checkpoint(work / "last.pt")
    raw, avg = ckpt["train_state_dict"], ckpt["state_dict"]
    assert raw.keys() == avg.keys()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    rows = (work / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iter,loss,lr") and len(rows) >= 3
    assert (work / "curves.png").stat().st_size > 0 and (work / "confusion.png").stat().st_size > 0
    with pytest.raises(ValueError, match="ema"):
        train(config_from_dict(_cfg(tmp_path / "bad", ema=1.5)), quiet=True)


def test_resume_with_ema_continues_exactly(tmp_path: Path) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        full = _cfg(tmp_path, ema=0.9, iters=4, checkpoint_interval=2, eval_interval=100)
        train(config_from_dict(full), quiet=True)
        split = _cfg(tmp_path, ema=0.9, iters=4, checkpoint_interval=2, eval_interval=100)
        split["work_dir"] = str(tmp_path / "split")
        train(config_from_dict(split), quiet=True, stop_after=2)
        train(config_from_dict(split), resume="auto", quiet=True)
    finally:
        torch.use_deterministic_algorithms(False)
    a = load_checkpoint(tmp_path / "work" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("state_dict", "train_state_dict"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def test_aux_weight_per_output() -> None:
    from types import SimpleNamespace

    from training.train import aux_weights

    aux = [torch.zeros(1), torch.zeros(1)]
    assert aux_weights(SimpleNamespace(aux_weight=0.4), aux) == [0.4, 0.4]
    assert aux_weights(SimpleNamespace(aux_weight=[1.0, 0.5]), aux) == [1.0, 0.5]
    with pytest.raises(ValueError, match="2 auxiliary outputs"):
        aux_weights(SimpleNamespace(aux_weight=[1.0]), aux)


def test_layer_decay_scales_backbone_blocks_by_depth() -> None:
    from torch import nn

    from training.optim import layer_depths, param_groups

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Module()
            self.backbone.patch_embed = nn.Linear(2, 2)
            self.backbone.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
            self.backbone.norm = nn.LayerNorm(2)
            self.decode_head = nn.Linear(2, 2)

    m = Toy()
    d = layer_depths(m)
    assert d["backbone.patch_embed.weight"] == 0 and d["backbone.layers.2.weight"] == 3
    assert d["backbone.norm.weight"] == 4 and d["decode_head.weight"] == 4
    groups = param_groups(m, 1.0, 0.0, head_lr_mult=10.0, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(m.backbone.patch_embed.weight)] == pytest.approx(0.5**4)
    assert lr_of[id(m.backbone.layers[0].weight)] == pytest.approx(0.5**3)
    assert lr_of[id(m.backbone.norm.weight)] == pytest.approx(1.0)
    assert lr_of[id(m.decode_head.weight)] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(m, 1.0, 0.0, layer_decay=1.5)


def test_stdc_boundary_head_trains_with_its_own_loss() -> None:
    from training.models import model_info
    from training.train import aux_losses

    tiny = dict(model_info("stdc")["tiny"][0], boundary_head=True)
    m = build("stdc", num_classes=3, **tiny)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    logits, aux = m.forward_with_aux(x)
    fns = aux_losses(m, len(aux), lambda a, b: torch.zeros(()))
    assert fns[-1] == m.auxiliary_head[-1].loss
    loss = sum(fn(a, y) for fn, a in zip(fns, aux))
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_init_weights_loads_matching_tensors_and_keeps_a_new_classifier(tmp_path: Path) -> None:
    from training.checkpoint import save_atomic
    from training.train import load_init_weights

    kw = {"backbone": "resnet18", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}}
    src = build("fcn", num_classes=5, **kw)
    save_atomic({"state_dict": src.state_dict()}, tmp_path / "src.pt")
    dst = build("fcn", num_classes=3, **kw)
    fresh = dst.decode_head.conv_seg.weight.detach().clone()
    report = load_init_weights(dst, tmp_path / "src.pt")
    assert "decode_head.conv_seg.weight" in report["skipped"] and "decode_head.conv_seg.weight" in report["missing"]
    assert torch.equal(dst.backbone.layer1[0].conv1.weight, src.backbone.layer1[0].conv1.weight)
    assert torch.equal(dst.decode_head.conv_seg.weight, fresh)
    other = build("segformer", num_classes=3, backbone="mit-b0", backbone_kwargs={"embed_dims": 8})
    with pytest.raises(ValueError, match="no tensor"):
        load_init_weights(other, tmp_path / "src.pt")
    with pytest.raises(FileNotFoundError):
        load_init_weights(dst, tmp_path / "missing.pt")
