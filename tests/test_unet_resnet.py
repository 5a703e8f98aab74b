"""U-Net on a ResNet encoder (``unet_resnet``) against segmentation_models.pytorch 0.6.0's ``smp.Unet("resnet34")``.

Reference: smp's ``Unet("resnet34", classes=11)`` has 24,437,819 parameters (encoder 21,284,672, decoder 3,151,552,
segmentation head 1,595); loading our decoder's state dict into smp's ``UnetDecoder`` + ``SegmentationHead`` (names
``blocks.*`` and ``segmentation_head.0``) and feeding both our encoder's maps gave identical logits (max abs
difference 0.0 at 64x96 and 128x160). The shared checks (shapes, gradients, ONNX, compile) are in
tests/test_model_matrix.py.
"""

from __future__ import annotations

import pytest
import torch

from training.models import build

TINY = {"base_channels": 8, "stem_channels": 8}


def test_params_and_names_match_smp_unet_resnet34() -> None:
    with torch.device("meta"):
        m = build("unet_resnet", num_classes=11)
    assert sum(p.numel() for p in m.parameters()) == 24_437_819
    assert sum(p.numel() for p in m.backbone.parameters()) == 21_284_672
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["backbone.conv1.weight"] == (64, 3, 7, 7)  # torchvision's stem (v1b), smp's encoder
    assert shapes["decode_head.blocks.0.conv1.0.weight"] == (256, 768, 3, 3)  # 512 + skip 256 -> 256
    assert shapes["decode_head.blocks.3.conv1.0.weight"] == (32, 128, 3, 3)  # 64 + stem skip 64 -> 32
    assert shapes["decode_head.blocks.4.conv2.1.running_var"] == (16,)
    assert shapes["decode_head.conv_seg.weight"] == (11, 16, 3, 3)  # smp's 3x3 segmentation head
    assert m.auxiliary_head is None and m.output_stride == 1


def test_any_size_full_resolution_aux_and_errors() -> None:
    m = build("unet_resnet", num_classes=3, backbone_kwargs=TINY, aux=True).eval()
    assert m.decode_head.decoder_channels == (32, 16, 8, 4, 2)  # smp's widths scaled with the backbone
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
        assert m(torch.randn(1, 3, 67, 85)).shape == (1, 3, 68, 86) == (1, 3, *m.logits_hw(67, 85))
    _, aux = m.train().forward_with_aux(torch.randn(2, 3, 64, 64))
    assert len(aux) == 1 and aux[0].shape == (2, 3, 4, 4)  # FCN auxiliary head on layer3 (stride 16)
    m = build("unet_resnet", num_classes=2, backbone="resnet50", backbone_kwargs=TINY, decoder_channels=[8] * 5)
    assert m.decode_head.in_channels == (8, 32, 64, 128, 256)
    with pytest.raises(ValueError, match="must be a ResNet"):
        build("unet_resnet", num_classes=2, backbone="mobilenetv2")
    with pytest.raises(ValueError, match="output stride is fixed"):
        build("unet_resnet", num_classes=2, backbone_kwargs={"output_stride": 8})
    with pytest.raises(ValueError, match="one positive width per"):
        build("unet_resnet", num_classes=2, backbone_kwargs=TINY, decoder_channels=[8, 8])
