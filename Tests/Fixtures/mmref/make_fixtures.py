#!/usr/bin/env python3
"""Reference fixtures for det-infer / seg-infer: small random-weight RetinaNet and UPerNet (ResNet-50 at base width
8) run by mmdetection 3.3.0 / mmsegmentation 1.2.2 on CPU, through their own test pipelines and predict code.

Writes, next to this script (see README.md for the file formats):
  images/det_*.png, images/seg_*.png          small test images (simple shapes on gradients, deterministic)
  retinanet_r50w8.pth                          mmdet-3.x checkpoint ({"state_dict", "meta"})
  retinanet_r50w8.safetensors                  the same converted by scripts/convert_pth.py (our keys)
  retinanet_r50w8.json                         OUR config for the same model and test pipeline
  retinanet_r50w8_detections.json              mmdet's detections per image (original pixels) + margins
  upernet_r50w8.pth / .safetensors / .json     the same for mmseg's UPerNet (+ FCN auxiliary head)
  upernet_r50w8_predictions.json               per image: label-map PNGs (whole / ms+flip TTA) + margins
  seg_pred/NAME.png, seg_pred_tta/NAME.png     label maps at the original size (pixel value = class index)
  seg_unsure/NAME.png, seg_unsure_tta/NAME.png 1 where the top-2 class probabilities are within 1e-3

usage (from the repository root):
  ../shared/peer/setup.sh && ../shared/mmref/setup.sh        # once: ~/.acmix-peer (torch), ~/.mmref (mm*)
  PYTHONPATH=../shared/mmref ~/.mmref/bin/python Tests/Fixtures/mmref/make_fixtures.py
Deterministic: the same files come out on every run (torch 2.x CPU, 2 threads).
"""
import json
import os
import subprocess
import sys

import mmcv_tv_patch  # noqa: F401  (must precede every mmdet / mmseg model import)
import cv2
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
CONVERT = os.path.join(ROOT, "scripts", "convert_pth.py")
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

DET_IMAGES = [("det_0_96x64", 96, 64), ("det_1_80x120", 80, 120), ("det_2_128x128", 128, 128), ("det_3_140x60", 140, 60)]
SEG_IMAGES = [("seg_0_120x90", 120, 90), ("seg_1_64x100", 64, 100), ("seg_2_160x72", 160, 72)]
DET_SCALE = (160, 128)
SEG_SCALE = (128, 96)
SEG_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def rel(path):
    return os.path.relpath(path, HERE)


# ------------------------------------------------------------------------------------------------------------ images


def draw_image(path, w, h, seed):
    """RGB gradient background, a few filled shapes, mild noise; written as PNG (cv2 writes BGR)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([40 + 180 * x / max(w - 1, 1), 60 + 150 * y / max(h - 1, 1),
                    np.full_like(x, 90.0 + 40 * (seed % 3))], axis=-1)
    colours = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (240, 220, 50), (20, 20, 20), (250, 250, 250)]
    for k in range(4):
        c = colours[(seed + k) % len(colours)]
        kind = (seed + k) % 3
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        s = rng.uniform(0.12, 0.3) * min(w, h)
        if kind == 0:
            img[(np.abs(x - cx) < s) & (np.abs(y - cy) < 0.7 * s)] = c
        elif kind == 1:
            img[(x - cx) ** 2 + (y - cy) ** 2 < s * s] = c
        else:
            inside = (y > cy - s) & (y < cy + s) & (np.abs(x - cx) < (y - (cy - s)) / 2)
            img[inside] = c
    img = img + rng.normal(0, 6, img.shape)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    cv2.imwrite(path, rgb[:, :, ::-1].copy())
    return rgb


# ------------------------------------------------------------------------------------------------------ random init


def randomise_bn_and_convs(model, seed, skip=()):
    """Fan-in scaled conv weights (activations stay O(1)), random BN affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if any(name.startswith(s) for s in skip):
                continue
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.6 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1000)
    return g


def round_to_half(model):
    """Every float parameter and buffer rounded to float16 precision (kept float32), so that the stored float16 files
    hold the exact weights mmdet/mmseg ran with, at half the size. Only state-dict tensors: the data preprocessor's
    mean/std buffers (not saved) must stay exact."""
    with torch.no_grad():
        for t in model.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    assert torch.equal(model.data_preprocessor.mean.flatten(), torch.tensor(MEAN))


def save_mm_checkpoint(model, path, meta):
    """An mmdet-3.x / mmseg-1.x checkpoint: {"state_dict": ..., "meta": ...}, float tensors stored as float16."""
    sd = {k: (v.detach().half() if v.is_floating_point() else v.detach().clone()) for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta": meta}, path)


def convert(pth, st, model):
    """scripts/convert_pth.py (float16 storage); checks that the result holds the model's exact weights."""
    if os.path.exists(st):
        os.remove(st)
    r = subprocess.run([sys.executable, CONVERT, rel(pth), rel(st), "--dtype", "float16"], capture_output=True, text=True,
                       cwd=HERE)
    if r.returncode != 0:
        sys.exit(f"convert_pth.py failed:\n{r.stdout}{r.stderr}")
    if r.stderr.strip():
        print(r.stderr.strip(), file=sys.stderr)
    from safetensors.torch import load_file
    out, sd = load_file(st), model.state_dict()
    assert set(out) == set(sd), set(out) ^ set(sd)
    for k, v in sd.items():
        assert torch.equal(out[k].to(v.dtype), v), k
    return r.stdout.strip()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


# ------------------------------------------------------------------------------------------------------- detection


def det_model_cfg():
    return ConfigDict(
        type="RetinaNet",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type="ResNet", depth=50, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch"),
        neck=dict(type="FPN", in_channels=[32, 64, 128, 256], out_channels=32, start_level=1,
                  add_extra_convs="on_input", num_outs=5),
        bbox_head=dict(
            type="RetinaHead", num_classes=3, in_channels=32, stacked_convs=2, feat_channels=32,
            anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                  ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                      max_per_img=100))


DET_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=DET_SCALE, keep_ratio=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]


def our_det_config():
    """ACmixKit's config for the same model and test pipeline (standalone: no _base_)."""
    return {
        "model": {
            "type": "RetinaNet",
            "backbone": {"arch": "resnet50", "base_width": 8, "frozen_stages": -1, "norm_eval": True},
            "neck": {"type": "FPN", "out_channels": 32, "start_level": 1, "add_extra_convs": "on_input", "num_outs": 5,
                     "relu_before_extra_convs": False},
            "bbox_head": {
                "type": "RetinaHead", "num_classes": 3, "in_channels": 32, "stacked_convs": 2, "feat_channels": 32,
                "anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 3,
                                     "ratios": [0.5, 1.0, 2.0], "strides": [8, 16, 32, 64, 128]},
                "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0],
                               "target_stds": [1.0, 1.0, 1.0, 1.0]},
                "loss_cls": {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
                "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
            },
            "train_cfg": {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4,
                                       "min_pos_iou": 0, "ignore_iof_thr": -1, "gt_max_assign_all": True},
                          "allowed_border": -1, "pos_weight": -1, "debug": False},
            "test_cfg": {"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05,
                         "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100},
        },
        "data": {"dataset": "shapes", "samples_per_gpu": 2, "workers_per_gpu": 0, "img_scale": list(DET_SCALE),
                 "keep_ratio": True, "flip_ratio": 0.5, "size_divisor": 32,
                 "shapes": {"size": 128, "seed": 0, "train_count": 8, "val_count": 4, "root": "data/shapes"}},
        "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001},
        "runner": {"type": "EpochBasedRunner", "max_epochs": 1},
        "seed": 0,
    }


def instance_detections(model, describe=None):
    """The model's detections (boxes in original pixels, score, 0-based label, mask as a COCO RLE) on every det_* image,
    through mmdet's own test pipeline; `describe(model, data)` adds to each image's printed line."""
    from mmcv.transforms import Compose
    from pycocotools import mask as mask_utils
    pipeline = Compose(DET_PIPELINE)
    images = []
    for i, (name, w, h) in enumerate(DET_IMAGES):
        path = os.path.join(HERE, "images", name + ".png")
        assert os.path.exists(path), f"{path}: run make_fixtures.py first"
        data = pseudo_collate([pipeline(dict(img_path=path, img_id=i))])
        with torch.no_grad():
            out = model.test_step(data)[0]
        p = out.pred_instances
        dets = []
        for k in range(p.scores.numel()):
            rle = mask_utils.encode(np.asfortranarray(p.masks[k].numpy().astype(np.uint8)))
            dets.append({"bbox": [float(v) for v in p.bboxes[k]], "score": float(p.scores[k]), "label": int(p.labels[k]),
                         "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}})
        images.append({"file_name": rel(path), "width": w, "height": h, "detections": dets})
        print(f"{name}: {len(dets)} detections, top scores {[round(d['score'], 3) for d in dets[:5]]}, "
              f"mask pixels {int(p.masks.sum())}" + (f", margins {describe(model, data)}" if describe else ""))
    return images


def box_iou(a, b):
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def det_margins(model, data, cfg):
    """How close this image's decisions are to a threshold (a test tolerates flips only that close):
    score_thr vs every (anchor, class) score; NMS IoU 0.5 vs every same-class candidate pair; the nms_pre and
    max_per_img cut-offs vs the scores on either side."""
    head = model.bbox_head
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        feats = model.extract_feat(d["inputs"])
        cls_scores, bbox_preds = head(feats)
        meta = d["data_samples"][0].metainfo
        scores = [c[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels).sigmoid() for c in cls_scores]
        allscores = torch.cat([s.reshape(-1) for s in scores])
        per_level = [int((s > cfg.score_thr).sum()) for s in scores]
        cut = []
        for s in scores:
            v = s.reshape(-1).sort(descending=True).values
            v = v[v > cfg.score_thr]
            if v.numel() > cfg.nms_pre:
                cut.append(float(v[cfg.nms_pre - 1] - v[cfg.nms_pre]))
        res = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta], cfg=cfg, rescale=True,
                                   with_nms=False)[0]
        iou_margin = None
        for lab in res.labels.unique():
            b = res.bboxes[res.labels == lab]
            if b.shape[0] > 1:
                iou = box_iou(b, b)
                iu = torch.triu_indices(b.shape[0], b.shape[0], 1)
                m = (iou[iu[0], iu[1]] - cfg.nms.iou_threshold).abs().min().item()
                iou_margin = m if iou_margin is None else min(iou_margin, m)
    return {
        "candidates_per_level": per_level,
        "score_thr_margin": float((allscores - cfg.score_thr).abs().min()),
        "nms_iou_margin": iou_margin,
        "nms_pre_cut_margin": min(cut) if cut else None,
        "pre_nms_boxes": int(res.scores.numel()),
    }


def make_detection():
    init_default_scope("mmdet")
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    import mmdet

    torch.manual_seed(0)
    model = MODELS.build(det_model_cfg())
    model.init_weights()
    randomise_bn_and_convs(model, seed=1, skip=("bbox_head.retina_",))
    # The classifier's logits: wide (std ~4) around a low mean, so that few (anchor, class) pairs pass score_thr, some
    # far above it (scores up to ~1), and few sit near the thresholds. The head's input features are ~20-30 in size.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        cls, reg = model.bbox_head.retina_cls, model.bbox_head.retina_reg
        cls.weight.copy_(torch.randn(cls.weight.shape, generator=g) * 0.007)
        cls.bias.copy_(-13.5 + 0.5 * torch.randn(cls.bias.shape, generator=g))
        reg.weight.copy_(torch.randn(reg.weight.shape, generator=g) * 0.0007)   # deltas ~0.3
        reg.bias.copy_(0.1 * torch.randn(reg.bias.shape, generator=g))
        # Larger outputs on the coarser pyramid levels, so that every level (P3-P7, down to 2x1 maps) has candidates.
        for f, m in zip((1.0, 1.4, 2.2, 14.0, 6.0), model.neck.fpn_convs):
            m.conv.weight.mul_(f)
            m.conv.bias.mul_(f)
    round_to_half(model)
    model.eval()

    pth = os.path.join(HERE, "retinanet_r50w8.pth")
    save_mm_checkpoint(model, pth, {"mmdet_version": mmdet.__version__, "mmengine_version": "0.10.7",
                                    "dataset_meta": {"classes": ("rect", "circle", "triangle")},
                                    "note": "random weights, Tests/Fixtures/mmref/make_fixtures.py"})
    print(convert(pth, os.path.join(HERE, "retinanet_r50w8.safetensors"), model))
    write_json(os.path.join(HERE, "retinanet_r50w8.json"), our_det_config())

    pipeline = Compose(DET_PIPELINE)
    cfg = model.bbox_head.test_cfg
    images = []
    for i, (name, w, h) in enumerate(DET_IMAGES):
        path = os.path.join(HERE, "images", name + ".png")
        draw_image(path, w, h, seed=i)
        data = pseudo_collate([pipeline(dict(img_path=path, img_id=i))])
        with torch.no_grad():
            out = model.test_step(data)[0]
        meta = out.metainfo
        p = out.pred_instances
        dets = [{"bbox": [float(v) for v in p.bboxes[k]], "score": float(p.scores[k]), "label": int(p.labels[k])}
                for k in range(p.scores.numel())]
        images.append({
            "file_name": rel(path), "width": w, "height": h,
            "img_shape": list(meta["img_shape"]), "pad_shape": list(meta["pad_shape"]),
            "scale_factor": [float(s) for s in meta["scale_factor"]],
            "detections": dets, "margins": det_margins(model, data, cfg),
        })
        print(f"{name}: {len(dets)} detections, top scores {[round(d['score'], 3) for d in dets[:5]]}, "
              f"margins {images[-1]['margins']}")
    write_json(os.path.join(HERE, "retinanet_r50w8_detections.json"), {
        "generator": "Tests/Fixtures/mmref/make_fixtures.py", "mmdet": mmdet.__version__, "torch": torch.__version__,
        "checkpoint": "retinanet_r50w8.pth", "weights": "retinanet_r50w8.safetensors", "config": "retinanet_r50w8.json",
        "classes": ["rect", "circle", "triangle"],
        "test_pipeline": "LoadImageFromFile (cv2, BGR) -> Resize(scale=(160, 128), keep_ratio=True, bilinear cv2) -> "
                         "DetDataPreprocessor(bgr_to_rgb, mean/std ImageNet, pad_size_divisor=32, pad value 0)",
        "test_cfg": {"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5},
                     "max_per_img": 100},
        "bbox_format": "x1, y1, x2, y2 in original-image pixels (mmdet rescale=True: multiplied by 1/scale_factor, "
                       "not clipped to the original image); label: 0-based class index; detections in mmdet's order "
                       "(batched_nms: descending score)",
        "images": images,
    })


# ---------------------------------------------------------------------------------------------------- segmentation


def seg_model_cfg():
    norm = dict(type="BN", requires_grad=True)
    return ConfigDict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=MEAN, std=STD, bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255),
        backbone=dict(type="ResNet", depth=50, stem_channels=8, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                      dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), norm_cfg=norm, norm_eval=False, style="pytorch",
                      contract_dilation=True),
        decode_head=dict(type="UPerHead", in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=16, dropout_ratio=0.1, num_classes=5, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=128, in_index=2, channels=8, num_convs=1, concat_input=False,
                            dropout_ratio=0.1, num_classes=5, norm_cfg=norm, align_corners=False,
                            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode="whole"))


SEG_PIPELINE = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=SEG_SCALE, keep_ratio=True),
                dict(type="PackSegInputs")]
SEG_TTA_PIPELINE = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in SEG_RATIOS],
        [dict(type="RandomFlip", prob=0., direction="horizontal"), dict(type="RandomFlip", prob=1., direction="horizontal")],
        [dict(type="PackSegInputs")]]),
]


def our_seg_config():
    return {
        "model": {
            "type": "EncoderDecoder",
            "backbone": {"arch": "resnet50", "base_width": 8, "frozen_stages": -1, "norm_eval": False},
            "decode_head": {"type": "UPerHead", "channels": 16, "num_classes": 5, "norm": "BN", "dropout_ratio": 0.1,
                            "pool_scales": [1, 2, 3, 6]},
            "auxiliary_head": {"type": "FCNHead", "in_index": 2, "channels": 8, "num_convs": 1, "concat_input": False,
                               "num_classes": 5, "norm": "BN", "dropout_ratio": 0.1, "loss_weight": 0.4},
            "test_cfg": {"mode": "whole"},
        },
        "data": {"dataset": "shapes", "samples_per_gpu": 2, "workers_per_gpu": 0, "img_scale": list(SEG_SCALE),
                 "ratio_range": [0.5, 2.0], "crop_size": [96, 96], "cat_max_ratio": 0.75, "flip_ratio": 0.5,
                 "photometric": True, "reduce_zero_label": False,
                 "shapes": {"size": 128, "seed": 0, "train_count": 8, "val_count": 4}},
        "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005},
        "runner": {"type": "IterBasedRunner", "max_iters": 10},
        "seed": 0,
    }


def save_labels(path, labels):
    cv2.imwrite(path, labels.astype(np.uint8))


def unsure(probs, eps=1e-3):
    """1 where the two largest class probabilities are within eps (an argmax a float rounding can flip)."""
    top2 = probs.topk(2, dim=0).values
    return ((top2[0] - top2[1]) < eps).to(torch.uint8).numpy(), float((top2[0] - top2[1]).min())


def make_segmentation():
    init_default_scope("mmseg")
    from mmcv.transforms import Compose
    from mmseg.models import SegTTAModel
    from mmseg.registry import MODELS
    import mmseg

    torch.manual_seed(0)
    model = MODELS.build(seg_model_cfg())
    model.init_weights()
    randomise_bn_and_convs(model, seed=2, skip=("decode_head.conv_seg", "auxiliary_head.conv_seg"))
    g = torch.Generator().manual_seed(4)   # a classifier draw under which every class wins somewhere in every image
    with torch.no_grad():
        for head in (model.decode_head, model.auxiliary_head):
            head.conv_seg.weight.copy_(torch.randn(head.conv_seg.weight.shape, generator=g) * 0.4)
            head.conv_seg.bias.copy_(0.3 * torch.randn(head.conv_seg.bias.shape, generator=g))
    round_to_half(model)
    model.eval()

    pth = os.path.join(HERE, "upernet_r50w8.pth")
    save_mm_checkpoint(model, pth, {"mmseg_version": mmseg.__version__, "mmengine_version": "0.10.7",
                                    "dataset_meta": {"classes": ("background", "rect", "circle", "triangle", "star")},
                                    "note": "random weights, Tests/Fixtures/mmref/make_fixtures.py"})
    print(convert(pth, os.path.join(HERE, "upernet_r50w8.safetensors"), model))
    write_json(os.path.join(HERE, "upernet_r50w8.json"), our_seg_config())

    tta = SegTTAModel(module=model)
    tta.eval()
    pipeline, tta_pipeline = Compose(SEG_PIPELINE), Compose(SEG_TTA_PIPELINE)
    for d in ("seg_pred", "seg_pred_tta", "seg_unsure", "seg_unsure_tta"):
        os.makedirs(os.path.join(HERE, d), exist_ok=True)
    images = []
    for i, (name, w, h) in enumerate(SEG_IMAGES):
        path = os.path.join(HERE, "images", name + ".png")
        draw_image(path, w, h, seed=10 + i)
        with torch.no_grad():
            out = model.test_step(pseudo_collate([pipeline(dict(img_path=path))]))[0]
            aug = tta_pipeline(dict(img_path=path))
            out_tta = tta.test_step(pseudo_collate([aug]))[0]
            # the same TTA average by hand, to record margins (SegTTAModel keeps only the argmax)
            probs = 0
            sizes = []
            for inputs, sample in zip(aug["inputs"], aug["data_samples"]):
                r = model.test_step(pseudo_collate([dict(inputs=inputs, data_samples=sample)]))[0]
                probs = probs + r.seg_logits.data.softmax(dim=0)
                sizes.append([sample.metainfo["img_shape"][0], sample.metainfo["img_shape"][1], bool(sample.metainfo["flip"])])
            probs = probs / len(aug["inputs"])
        pred = out.pred_sem_seg.data[0].numpy()
        pred_tta = out_tta.pred_sem_seg.data.reshape(h, w).numpy()
        assert np.array_equal(probs.argmax(0).numpy(), pred_tta), "hand-made TTA average differs from SegTTAModel"
        u, m = unsure(out.seg_logits.data.softmax(dim=0))
        u_tta, m_tta = unsure(probs)
        files = {}
        for sub, arr in (("seg_pred", pred), ("seg_pred_tta", pred_tta), ("seg_unsure", u), ("seg_unsure_tta", u_tta)):
            f = os.path.join(HERE, sub, name + ".png")
            save_labels(f, arr)
            files[sub] = rel(f)
        images.append({
            "file_name": rel(path), "width": w, "height": h,
            "img_shape": list(out.metainfo["img_shape"]),
            "pred": files["seg_pred"], "pred_tta": files["seg_pred_tta"],
            "unsure": files["seg_unsure"], "unsure_tta": files["seg_unsure_tta"],
            "unsure_pixels": int(u.sum()), "unsure_pixels_tta": int(u_tta.sum()),
            "min_top2_prob_margin": m, "min_top2_prob_margin_tta": m_tta,
            "class_histogram": np.bincount(pred.reshape(-1), minlength=5).tolist(),
            "class_histogram_tta": np.bincount(pred_tta.reshape(-1), minlength=5).tolist(),
            "tta_inputs": sizes,
        })
        print(f"{name}: img_shape {images[-1]['img_shape']}, hist {images[-1]['class_histogram']}, "
              f"tta hist {images[-1]['class_histogram_tta']}, unsure {int(u.sum())}/{int(u_tta.sum())}, "
              f"changed by TTA {int((pred != pred_tta).sum())}")
    write_json(os.path.join(HERE, "upernet_r50w8_predictions.json"), {
        "generator": "Tests/Fixtures/mmref/make_fixtures.py", "mmseg": mmseg.__version__, "torch": torch.__version__,
        "checkpoint": "upernet_r50w8.pth", "weights": "upernet_r50w8.safetensors", "config": "upernet_r50w8.json",
        "test_pipeline": "LoadImageFromFile (cv2, BGR) -> Resize(scale=(128, 96), keep_ratio=True, bilinear cv2) -> "
                         "SegDataPreProcessor(bgr_to_rgb, mean/std ImageNet, no test padding); whole inference",
        "tta": "mmseg 1.x ms+flip (see TTA.md): Resize(scale_factor=r, keep_ratio=True) of the ORIGINAL image for r in "
               "0.5..1.75 x RandomFlip prob 0 / 1; per augmentation logits -> input size -> unflip -> original size "
               "(bilinear, align_corners False) -> softmax; mean of the 12; argmax",
        "label_png": "8-bit grey PNG, pixel value = class index (0..4), at the original image size",
        "tta_inputs_format": "[height, width, flipped] of each of the 12 network inputs, in SegTTAModel's order",
        "images": images,
    })


def main():
    torch.set_num_threads(2)
    os.makedirs(os.path.join(HERE, "images"), exist_ok=True)
    which = sys.argv[1:] or ["det", "seg"]
    if "det" in which:
        make_detection()
    if "seg" in which:
        make_segmentation()


if __name__ == "__main__":
    main()
