#!/usr/bin/env python3
"""Reference fixture for det-infer on a Mask R-CNN checkpoint: a small random-weight Mask R-CNN (ResNet-50 at base
width 8, 32-channel FPN, RPN, Shared2FC box head and a 2-conv FCN mask head, mmdet's keys) run by mmdetection 3.3.0 on
CPU through its own test pipeline and predict code, on the det_* images of make_fixtures.py.

Writes, next to this script:
  mask_rcnn_r50w8.pth           mmdet-3.x checkpoint ({"state_dict", "meta"})
  mask_rcnn_r50w8.safetensors   the same converted by scripts/convert_pth.py
  mask_rcnn_r50w8.json          OUR config for the same model and test pipeline
  mask_rcnn_r50w8_detections.json  mmdet's detections per image: box (original pixels), score, label and the mask as
                                   a COCO RLE (pycocotools' compressed counts) at the original size

usage (from the repository root, after make_fixtures.py has drawn the images):
  PYTHONPATH=../shared/mmref ~/.mmref/bin/python Tests/Fixtures/mmref/make_mask_rcnn.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (imports mmcv_tv_patch first)
import torch  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

HERE = mf.HERE
NC = 3


def extractor(size):
    return dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=0),
                out_channels=32, featmap_strides=[4, 8, 16, 32])


def model_cfg():
    return ConfigDict(
        type="MaskRCNN",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=mf.MEAN, std=mf.STD, bgr_to_rgb=True, pad_size_divisor=32,
                               pad_mask=True),
        backbone=dict(type="ResNet", depth=50, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch"),
        neck=dict(type="FPN", in_channels=[32, 64, 128, 256], out_channels=32, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=32, feat_channels=32,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
                      bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=dict(type="StandardRoIHead", bbox_roi_extractor=extractor(7),
                      bbox_head=dict(type="Shared2FCBBoxHead", in_channels=32, fc_out_channels=64, roi_feat_size=7, num_classes=NC,
                                     bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                                     reg_class_agnostic=False,
                                     loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                                     loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
                      mask_roi_extractor=extractor(14),
                      mask_head=dict(type="FCNMaskHead", num_convs=2, in_channels=32, conv_out_channels=32, num_classes=NC,
                                     loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))),
        train_cfg=None,
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
                      rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))


def our_config():
    ext = lambda size: {"type": "SingleRoIExtractor", "roi_layer": {"type": "RoIAlign", "output_size": size, "sampling_ratio": 0},
                        "out_channels": 32, "featmap_strides": [4, 8, 16, 32]}
    return {
        "model": {
            "type": "MaskRCNN",
            "backbone": {"arch": "resnet50", "base_width": 8, "frozen_stages": -1, "norm_eval": True},
            "neck": {"type": "FPN", "out_channels": 32, "num_outs": 5},
            "rpn_head": {"type": "RPNHead", "in_channels": 32, "feat_channels": 32},
            "roi_head": {"type": "StandardRoIHead", "bbox_roi_extractor": ext(7),
                         "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 32, "fc_out_channels": 64, "num_classes": NC},
                         "mask_roi_extractor": ext(14),
                         "mask_head": {"type": "FCNMaskHead", "num_convs": 2, "in_channels": 32, "conv_out_channels": 32,
                                       "num_classes": NC}},
            "test_cfg": {"rpn": {"nms_pre": 1000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7}, "min_bbox_size": 0},
                         "rcnn": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100,
                                  "mask_thr_binary": 0.5}},
        },
        "data": {"dataset": "shapes", "samples_per_gpu": 2, "workers_per_gpu": 0, "img_scale": list(mf.DET_SCALE),
                 "keep_ratio": True, "flip_ratio": 0.5, "size_divisor": 32,
                 "shapes": {"size": 128, "seed": 0, "train_count": 8, "val_count": 4, "root": "data/shapes"}},
        "evaluation": {"metric": ["bbox", "segm"]},
        "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001},
        "runner": {"type": "EpochBasedRunner", "max_epochs": 1},
        "seed": 0,
    }


def main():
    init_default_scope("mmdet")
    from mmdet.registry import MODELS
    import mmdet

    torch.manual_seed(0)
    model = MODELS.build(model_cfg())
    model.init_weights()
    mf.randomise_bn_and_convs(model, seed=2, skip=("rpn_head.rpn_cls", "rpn_head.rpn_reg", "roi_head.bbox_head"))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        # Objectness and class logits spread wide, so that few decisions sit near a threshold; small deltas.
        rpn = model.rpn_head
        rpn.rpn_cls.weight.copy_(torch.randn(rpn.rpn_cls.weight.shape, generator=g) * 0.01)
        rpn.rpn_reg.weight.copy_(torch.randn(rpn.rpn_reg.weight.shape, generator=g) * 0.002)
        bh = model.roi_head.bbox_head
        for fc in bh.shared_fcs:
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) * (2.0 / fc.weight.shape[1]) ** 0.5)
        bh.fc_cls.weight.copy_(torch.randn(bh.fc_cls.weight.shape, generator=g) * 0.004)
        bh.fc_cls.bias.copy_(torch.tensor([0.5, 0.0, -0.5, 1.0]))
        bh.fc_reg.weight.copy_(torch.randn(bh.fc_reg.weight.shape, generator=g) * 0.01)
    mf.round_to_half(model)
    model.eval()

    pth = os.path.join(HERE, "mask_rcnn_r50w8.pth")
    mf.save_mm_checkpoint(model, pth, {"mmdet_version": mmdet.__version__, "mmengine_version": "0.10.7",
                                       "dataset_meta": {"classes": ("rect", "circle", "triangle")},
                                       "note": "random weights, Tests/Fixtures/mmref/make_mask_rcnn.py"})
    print(mf.convert(pth, os.path.join(HERE, "mask_rcnn_r50w8.safetensors"), model))
    mf.write_json(os.path.join(HERE, "mask_rcnn_r50w8.json"), our_config())

    images = mf.instance_detections(model)
    mf.write_json(os.path.join(HERE, "mask_rcnn_r50w8_detections.json"), {
        "generator": "Tests/Fixtures/mmref/make_mask_rcnn.py", "mmdet": mmdet.__version__, "torch": torch.__version__,
        "checkpoint": "mask_rcnn_r50w8.pth", "weights": "mask_rcnn_r50w8.safetensors", "config": "mask_rcnn_r50w8.json",
        "classes": ["rect", "circle", "triangle"],
        "bbox_format": "x1, y1, x2, y2 in original-image pixels; label: 0-based class; segmentation: COCO RLE at the "
                       "original size (mask_thr_binary 0.5)",
        "images": images,
    })


if __name__ == "__main__":
    main()
