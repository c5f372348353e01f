#!/usr/bin/env python3
"""Reference fixture for det-infer on a Cascade Mask R-CNN checkpoint: a small random-weight Cascade Mask R-CNN
(ResNet-50 at base width 8, 32-channel FPN, RPN, CascadeRoIHead with three class-agnostic Shared2FC box heads and one
2-conv FCN mask head per stage, mmdet's keys) run by mmdetection 3.3.0 on CPU through its own test pipeline and
predict code, on the det_* images of make_fixtures.py.

What mmdet 3.3's CascadeRoIHead.predict does, which the fixture exercises: each stage's box head runs on the current
RoIs; stages 0 and 1 refine them with their (class-agnostic) deltas (regress_by_class, clipped to the image); the
class logits (not the softmax) of the three stages are averaged and the last stage's predict_by_feat applies softmax,
decodes the last stage's deltas on the twice-refined RoIs, thresholds and runs NMS. The mask heads of all three stages
run on the final boxes; their sigmoid outputs are averaged (merge_aug_masks) and pasted at mask_thr_binary.

Writes, next to this script:
  cascade_mask_rcnn_r50w8.pth           mmdet-3.x checkpoint ({"state_dict", "meta"})
  cascade_mask_rcnn_r50w8.safetensors   the same converted by scripts/convert_pth.py
  cascade_mask_rcnn_r50w8.json          OUR config for the same model and test pipeline
  cascade_mask_rcnn_r50w8_detections.json  mmdet's detections per image: box (original pixels), score, label and the
                                           mask as a COCO RLE (pycocotools' compressed counts) at the original size

usage (from the repository root, after make_fixtures.py has drawn the images):
  PYTHONPATH=../shared/mmref ~/.mmref/bin/python Tests/Fixtures/mmref/make_cascade_mask_rcnn.py
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
NAME = "cascade_mask_rcnn_r50w8"
HEAD_SEED = 14   # RPN and box-head weights
MASK_LOGIT_SHIFT = [1.0, 4.5, 3.0]   # added to each stage's FCNMaskHead conv_logits bias
STAGE_STDS = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
STAGE_LOSS_WEIGHTS = [1, 0.5, 0.25]
# Per-stage class-logit biases (background last); they differ so that the stage average matters.
STAGE_CLS_BIAS = [[0.5, 0.0, -0.5, 1.0], [0.2, 0.3, -0.2, 0.9], [0.7, -0.2, -0.4, 1.2]]


def extractor(size):
    return dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=0),
                out_channels=32, featmap_strides=[4, 8, 16, 32])


def bbox_head(stds):
    return dict(type="Shared2FCBBoxHead", in_channels=32, fc_out_channels=64, roi_feat_size=7, num_classes=NC,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=stds),
                reg_class_agnostic=True,
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0))


def model_cfg():
    return ConfigDict(
        type="CascadeRCNN",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=mf.MEAN, std=mf.STD, bgr_to_rgb=True, pad_size_divisor=32,
                               pad_mask=True),
        backbone=dict(type="ResNet", depth=50, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch"),
        neck=dict(type="FPN", in_channels=[32, 64, 128, 256], out_channels=32, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=32, feat_channels=32,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
                      bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)),
        roi_head=dict(type="CascadeRoIHead", num_stages=3, stage_loss_weights=STAGE_LOSS_WEIGHTS,
                      bbox_roi_extractor=extractor(7),
                      bbox_head=[bbox_head(s) for s in STAGE_STDS],
                      mask_roi_extractor=extractor(14),
                      # one dict: mmdet's CascadeRoIHead.init_mask_head builds one FCNMaskHead per stage from it
                      mask_head=dict(type="FCNMaskHead", num_convs=2, in_channels=32, conv_out_channels=32, num_classes=NC,
                                     loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))),
        train_cfg=None,
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
                      rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))


def our_config():
    ext = lambda size: {"type": "SingleRoIExtractor", "roi_layer": {"type": "RoIAlign", "output_size": size, "sampling_ratio": 0},
                        "out_channels": 32, "featmap_strides": [4, 8, 16, 32]}
    head = lambda stds: {"type": "Shared2FCBBoxHead", "in_channels": 32, "fc_out_channels": 64, "roi_feat_size": 7, "num_classes": NC,
                         "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": stds},
                         "reg_class_agnostic": True,
                         "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
                         "loss_bbox": {"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0}}
    return {
        "model": {
            "type": "CascadeRCNN",
            "backbone": {"arch": "resnet50", "base_width": 8, "frozen_stages": -1, "norm_eval": True},
            "neck": {"type": "FPN", "out_channels": 32, "num_outs": 5},
            "rpn_head": {"type": "RPNHead", "in_channels": 32, "feat_channels": 32,
                         "loss_bbox": {"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}},
            "roi_head": {"type": "CascadeRoIHead", "num_stages": 3, "stage_loss_weights": STAGE_LOSS_WEIGHTS,
                         "bbox_roi_extractor": ext(7),
                         "bbox_head": [head(s) for s in STAGE_STDS],
                         "mask_roi_extractor": ext(14),
                         "mask_head": {"type": "FCNMaskHead", "num_convs": 2, "in_channels": 32, "conv_out_channels": 32,
                                       "num_classes": NC,
                                       "loss_mask": {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0}}},
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


def diagnostics(model, data):
    """Printed only: how far stages 0 and 1 move the RoIs (mean |delta| in input pixels), and how close mmdet's
    decisions sit to a threshold (what float rounding could flip): min |score - score_thr| over every RoI and class,
    min |IoU - 0.5| over same-class candidate pairs, the score gap at the max_per_img cut (100th - 101st kept) and the
    smallest gap between two kept scores (their order)."""
    from mmdet.structures.bbox import bbox2roi, bbox_overlaps
    from mmcv.ops import batched_nms
    roi, cfg = model.roi_head, model.roi_head.test_cfg
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        metas = [s.metainfo for s in d["data_samples"]]
        x = model.extract_feat(d["inputs"])
        props = model.rpn_head.predict(x, d["data_samples"], rescale=False)
        rois = bbox2roi([p.bboxes for p in props])
        shifts = []
        for stage in range(roi.num_stages - 1):
            res = roi._bbox_forward(stage, x, rois)
            new = roi.bbox_head[stage].regress_by_class(rois[:, 1:], res["cls_score"][:, :-1].argmax(1), res["bbox_pred"],
                                                        metas[0])
            shifts.append(round(float((new - rois[:, 1:]).abs().mean()), 3))
            rois = torch.cat([rois[:, [0]], new], 1)
        rois, cls_scores, bbox_preds = roi._refine_roi(x, bbox2roi([p.bboxes for p in props]), metas, (len(props[0]),))
        raw = roi.bbox_head[-1].predict_by_feat(rois=rois, cls_scores=cls_scores, bbox_preds=bbox_preds,
                                                batch_img_metas=metas, rescale=False, rcnn_test_cfg=None)[0]
        scores, boxes = raw.scores[:, :-1], raw.bboxes          # (n, NC) softmax, (n, 4) class-agnostic
        thr_margin = float((scores - cfg.score_thr).abs().min())
        keep = scores > cfg.score_thr
        idx, labels = keep.nonzero(as_tuple=True)
        cand_boxes, cand_scores = boxes[idx], scores[idx, labels]
        iou_margin = 1.0
        for c in range(NC):
            b = cand_boxes[labels == c]
            if len(b) > 1:
                iou = bbox_overlaps(b, b)
                iou_margin = min(iou_margin, float((iou.triu(1) - 0.5).abs()[torch.ones_like(iou).triu(1).bool()].min()))
        dets, kept = batched_nms(cand_boxes, cand_scores, labels, cfg.nms)
        s = dets[:, -1]
        cut = float(s[cfg.max_per_img - 1] - s[cfg.max_per_img]) if len(s) > cfg.max_per_img else None
        top = s[:cfg.max_per_img]
        order = float((top[:-1] - top[1:]).min()) if len(top) > 1 else None
    return {"roi_shifts": shifts, "score_thr_margin": thr_margin, "nms_iou_margin": iou_margin,
            "kept_after_nms": len(s), "max_per_img_cut_gap": cut, "min_score_gap": order}


def build_model(head_seed=HEAD_SEED):
    """The random-weight model, rounded to float16 precision, in eval mode."""
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(model_cfg())
    model.init_weights()
    assert len(model.roi_head.bbox_head) == 3 and len(model.roi_head.mask_head) == 3
    mf.randomise_bn_and_convs(model, seed=2, skip=("rpn_head.rpn_cls", "rpn_head.rpn_reg", "roi_head.bbox_head"))
    g = torch.Generator().manual_seed(head_seed)
    with torch.no_grad():
        # As make_mask_rcnn.py: small objectness weights (no tied proposal scores), class logits with a per-stage bias
        # (every RoI scores above score_thr for some class), small class-agnostic deltas.
        rpn = model.rpn_head
        rpn.rpn_cls.weight.copy_(torch.randn(rpn.rpn_cls.weight.shape, generator=g) * 0.01)
        rpn.rpn_reg.weight.copy_(torch.randn(rpn.rpn_reg.weight.shape, generator=g) * 0.002)
        for bh, bias in zip(model.roi_head.bbox_head, STAGE_CLS_BIAS):
            for fc in bh.shared_fcs:
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) * (2.0 / fc.weight.shape[1]) ** 0.5)
            bh.fc_cls.weight.copy_(torch.randn(bh.fc_cls.weight.shape, generator=g) * 0.02)
            bh.fc_cls.bias.copy_(torch.tensor(bias))
            assert bh.fc_reg.weight.shape[0] == 4   # class-agnostic
            bh.fc_reg.weight.copy_(torch.randn(bh.fc_reg.weight.shape, generator=g) * 0.01)
        # The random mask heads' logits run negative on average (measured on det_2's detections: means -1.0, -4.9,
        # -3.1), so the three stages' averaged sigmoids would rarely pass mask_thr_binary: centre them.
        for mh, shift in zip(model.roi_head.mask_head, MASK_LOGIT_SHIFT):
            mh.conv_logits.bias.add_(shift)
    mf.round_to_half(model)
    model.eval()
    return model


def main():
    torch.set_num_threads(2)
    init_default_scope("mmdet")
    import mmdet

    model = build_model()

    pth = os.path.join(HERE, NAME + ".pth")
    mf.save_mm_checkpoint(model, pth, {"mmdet_version": mmdet.__version__, "mmengine_version": "0.10.7",
                                       "dataset_meta": {"classes": ("rect", "circle", "triangle")},
                                       "note": "random weights, Tests/Fixtures/mmref/make_cascade_mask_rcnn.py"})
    convert_error = None
    try:
        print(mf.convert(pth, os.path.join(HERE, NAME + ".safetensors"), model))
    except SystemExit as e:   # mf.convert exits with convert_pth.py's output; write the other files anyway
        convert_error = str(e)
        print(convert_error, file=sys.stderr)
    mf.write_json(os.path.join(HERE, NAME + ".json"), our_config())

    images = mf.instance_detections(model, diagnostics)
    mf.write_json(os.path.join(HERE, NAME + "_detections.json"), {
        "generator": "Tests/Fixtures/mmref/make_cascade_mask_rcnn.py", "mmdet": mmdet.__version__, "torch": torch.__version__,
        "checkpoint": NAME + ".pth", "weights": NAME + ".safetensors", "config": NAME + ".json",
        "classes": ["rect", "circle", "triangle"],
        "bbox_format": "x1, y1, x2, y2 in original-image pixels; label: 0-based class; segmentation: COCO RLE at the "
                       "original size (mask_thr_binary 0.5)",
        "images": images,
    })
    if convert_error:
        sys.exit("the .safetensors was not written (scripts/convert_pth.py failed, above)")


if __name__ == "__main__":
    main()
