#!/usr/bin/env python3
"""mmdetection 3.3's RetinaNet R50-FPN (80 classes) on one 800x1333 image and mmsegmentation 1.2's UPerNet Swin-T
(150 classes, whole inference) on one 512x512 image, random weights, timed as `bench` times ours
(retinanet_r50_infer_800x1333, upernet_swin_tiny_fwd_512). One JSON line per case: median/min ms, peak RSS.

usage: PYTHONPATH=../shared/mmref ~/.mmref/bin/python scripts/peer/mm_infer_bench.py [--runs N] [--threads 2]
"""
import argparse

import mmcv_tv_patch  # noqa: F401
from peer_timing import report, timed
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope

p = argparse.ArgumentParser()
p.add_argument("--runs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--case", default="all", choices=["all", "retinanet", "upernet"])
args = p.parse_args()
torch.set_num_threads(args.threads)


torch.manual_seed(0)
if args.case in ("all", "retinanet"):
    init_default_scope("mmdet")
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    net = MODELS.build(ConfigDict(
        type="RetinaNet",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch"),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1, add_extra_convs="on_input", num_outs=5),
        bbox_head=dict(type="RetinaHead", num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                             strides=[8, 16, 32, 64, 128]),
                       bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                       loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)))
    net.init_weights()
    net.eval()
    image = torch.randn(1, 3, 800, 1344)
    meta = dict(img_shape=(800, 1333), pad_shape=(800, 1344), batch_input_shape=(800, 1344), ori_shape=(800, 1333), scale_factor=(1.0, 1.0))

    def det():
        with torch.no_grad():
            net.predict(image, [DetDataSample(metainfo=meta)], rescale=True)
    report("mmdet_retinanet_r50_infer_800x1333", *timed(det, args.runs), threads=args.threads)

if args.case in ("all", "upernet"):
    init_default_scope("mmseg")
    from mmseg.registry import MODELS as SEG
    norm = dict(type="BN", requires_grad=True)   # mmseg's SyncBN needs a process group; in one process it is BN
    seg = SEG.build(ConfigDict(
        type="EncoderDecoder",
        backbone=dict(type="SwinTransformer", embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4,
                      qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.3, use_abs_pos_embed=False,
                      act_cfg=dict(type="GELU"), norm_cfg=dict(type="LN", requires_grad=True), patch_norm=True, out_indices=(0, 1, 2, 3)),
        decode_head=dict(type="UPerHead", in_channels=[96, 192, 384, 768], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=512,
                         dropout_ratio=0.1, num_classes=150, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        test_cfg=dict(mode="whole")))
    seg.init_weights()
    seg.eval()
    x = torch.full((1, 3, 512, 512), 0.5)
    metas = [dict(img_shape=(512, 512), ori_shape=(512, 512), pad_shape=(512, 512))]

    def segment():
        with torch.no_grad():
            seg.encode_decode(x, metas)
    report("mmseg_upernet_swin_tiny_fwd_512", *timed(segment, args.runs), threads=args.threads)
