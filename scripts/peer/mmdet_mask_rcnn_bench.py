#!/usr/bin/env python3
"""mmdetection 3.3's Mask R-CNN (ResNet-50 FPN, 80 classes, mmdet's mask_rcnn_r50_fpn config) timed as `bench` times
ours: one training iteration at batch 2, 512x512, on random images and random targets (3-9 boxes with elliptical masks
per image; forward, losses, backward, SGD step), and inference on one 800x1333 image with score_thr 0 (100 detections,
masks pasted). Prints one JSON line per case like `bench`: median/min ms and peak RSS.

With `--model cascade_mask_rcnn`, mmdet's own cascade-mask-rcnn_r50_fpn_1x_coco model (3 stages) instead.

usage: PYTHONPATH=../shared/mmref ~/.mmref/bin/python scripts/peer/mmdet_mask_rcnn_bench.py [--runs N] [--threads 2]
       [--model mask_rcnn|cascade_mask_rcnn]
Run on a quiet machine, side by side with `bench --case mask_rcnn_r50_train_512_b2` (or
`cascade_mask_rcnn_r50_train_512_b2`) etc.
"""
import argparse

import mmcv_tv_patch  # noqa: F401
from peer_timing import report, timed
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

p = argparse.ArgumentParser()
p.add_argument("--runs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--case", default="all", choices=["all", "train", "infer"])
p.add_argument("--model", default="mask_rcnn", choices=["mask_rcnn", "cascade_mask_rcnn"])
args = p.parse_args()
torch.set_num_threads(args.threads)
init_default_scope("mmdet")
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402


def extractor(size):
    return dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=0),
                out_channels=256, featmap_strides=[4, 8, 16, 32])


def cascade_model(score_thr=0.05):
    """mmdet's cascade-mask-rcnn_r50_fpn_1x_coco model as its package config states it (no pretrained weights)."""
    import os
    import mmdet
    from mmengine.config import Config
    path = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", "cascade_rcnn", "cascade-mask-rcnn_r50_fpn_1x_coco.py")
    cfg = Config.fromfile(path).model
    cfg.backbone.init_cfg = None
    cfg.test_cfg.rcnn.score_thr = score_thr
    torch.manual_seed(0)
    m = MODELS.build(cfg)
    m.init_weights()
    return m


def model(score_thr=0.05):
    if args.model == "cascade_mask_rcnn":
        return cascade_model(score_thr)
    cfg = ConfigDict(
        type="MaskRCNN",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32),
        backbone=dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch"),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=256, feat_channels=256,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
                      bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=dict(type="StandardRoIHead", bbox_roi_extractor=extractor(7),
                      bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                                     bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                                     reg_class_agnostic=False,
                                     loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                                     loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
                      mask_roi_extractor=extractor(14),
                      mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                                     loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True,
                                   ignore_iof_thr=-1),
                     sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=True,
                                    ignore_iof_thr=-1),
                      sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
                      mask_size=28, pos_weight=-1, debug=False)),
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
                      rcnn=dict(score_thr=score_thr, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))
    torch.manual_seed(0)
    m = MODELS.build(cfg)
    m.init_weights()
    return m


rng = np.random.default_rng(1)
if args.case in ("all", "train"):
    net = model()
    net.train()
    size = 512
    samples = []
    for _ in range(2):
        n = int(rng.integers(3, 10))
        xy = rng.uniform(0, size - 112, (n, 2))
        wh = rng.uniform(16, 112, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        masks = np.stack([((((xx - (b[0] + b[2]) / 2) / ((b[2] - b[0]) / 2)) ** 2 + ((yy - (b[1] + b[3]) / 2) / ((b[3] - b[1]) / 2)) ** 2) <= 1)
                          .astype(np.uint8) for b in boxes])
        s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size), batch_input_shape=(size, size),
                                        ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(rng.integers(0, 80, n)),
                                      masks=BitmapMasks(masks, size, size))
        samples.append(s)
    images = torch.from_numpy(rng.standard_normal((2, 3, size, size)).astype(np.float32))
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad()
        losses = net.loss(images, samples)
        net.parse_losses(losses)[0].backward()
        opt.step()
    med, mn = timed(step, args.runs)
    report(f"mmdet_{args.model}_r50_train_512_b2", med, mn, s_per_iter=med, threads=args.threads)

if args.case in ("all", "infer"):
    net = model(score_thr=0.0)
    net.eval()
    image = torch.from_numpy(rng.standard_normal((1, 3, 800, 1344)).astype(np.float32))
    meta = dict(img_shape=(800, 1333), pad_shape=(800, 1344), batch_input_shape=(800, 1344), ori_shape=(800, 1333),
                scale_factor=(1.0, 1.0))

    def infer():
        with torch.no_grad():
            out = net.predict(image, [DetDataSample(metainfo=meta)], rescale=True)
        assert len(out[0].pred_instances.masks) == len(out[0].pred_instances.scores)
    med, mn = timed(infer, args.runs)
    report(f"mmdet_{args.model}_r50_infer_800x1333", med, mn, s_per_image=med, threads=args.threads)
