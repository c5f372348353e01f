"""Reference vectors for the toolkit's Cascade (Mask) R-CNN RoI head: mmdet 3.3's CascadeRoIHead with 3 stages, a
class-agnostic Shared2FCBBoxHead (SmoothL1, the real config's per-stage target_stds) and an FCNMaskHead per stage, on
fixed random weights, features, proposals and ground truth (boxes + instance masks at the padded input size, as
DetDataPreprocessor(pad_mask=True) gives them). Every stage's sampler keeps every candidate (num far above their
count), so no random draw has to match across frameworks and each stage's sampled RoIs are exactly
"gts + all (refined) candidates". Records every loss term of mmdet's loss dict (s0.loss_cls, s0.acc, ...), the
gradients of the summed loss (every term whose name contains 'loss'), each stage's training RoIs / labels / box
targets / mask targets, the test-time RoIs, cls scores and deltas of each stage, and predict(rescale=True): boxes,
scores, labels, the stage-averaged mask probabilities and the pasted masks at the original image size.
Writes cascade_roi_head.safetensors (key list in README.md).

usage: PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python Tests/Fixtures/cascade_roi_head/make_cascade_roi_head.py
"""
import os

import mmcv_tv_patch  # noqa: F401  (mmcv-lite has no compiled ops; see ../shared/mmref/README.md)
import numpy as np
import torch
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from safetensors.torch import save_file

torch.manual_seed(0)
C, NC, PAD = 4, 3, (96, 128)
STDS = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
IOU = [0.5, 0.6, 0.7]
train_cfg = [ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=t, neg_iou_thr=t, min_pos_iou=t,
                                      match_low_quality=False, ignore_iof_thr=-1),
                        sampler=dict(type='RandomSampler', num=100000, pos_fraction=0.25, neg_pos_ub=-1,
                                     add_gt_as_proposals=True),
                        mask_size=28, pos_weight=-1, debug=False) for t in IOU]
test_cfg = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)
extractor = lambda size: dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=size, sampling_ratio=0),
                              out_channels=C, featmap_strides=[4, 8, 16, 32])
bbox_head = lambda stds: dict(
    type='Shared2FCBBoxHead', in_channels=C, fc_out_channels=16, roi_feat_size=7, num_classes=NC,
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds), reg_class_agnostic=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
head = CascadeRoIHead(
    num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
    bbox_roi_extractor=extractor(7), bbox_head=[bbox_head(s) for s in STDS],
    mask_roi_extractor=extractor(14),
    mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=C, conv_out_channels=8, num_classes=NC,
                   loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)),
    train_cfg=train_cfg, test_cfg=test_cfg)
with torch.no_grad():
    for name, p in head.named_parameters():
        p.copy_(torch.randn_like(p) * (0.3 if 'weight' in name else 0.5))
feats = [torch.randn(2, C, PAD[0] // s, PAD[1] // s, requires_grad=True) for s in [4, 8, 16, 32]]
g = torch.Generator().manual_seed(5)


def boxes(n, w, h):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 8 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
    return torch.cat([xy, (xy + wh).clamp(max=torch.tensor([float(w), float(h)]))], 1)


def ellipses(bxs):
    """One filled ellipse per box (a little jagged), at the padded size."""
    yy, xx = np.mgrid[0:PAD[0], 0:PAD[1]] + 0.5
    out = []
    for x1, y1, x2, y2 in bxs.tolist():
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        r = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        out.append((r <= 1 + 0.2 * np.sin(xx * 0.7)).astype(np.uint8))
    return np.stack(out)


sizes = [(120, 90), (100, 96)]
gts = [boxes(3, *sizes[0]), boxes(2, *sizes[1])]
masks = [ellipses(b) for b in gts]
labels = [torch.tensor([0, 2, 1]), torch.tensor([1, 1])]
# Proposals: jittered copies of the ground truth (positives at several IoU levels) and random boxes (mostly negatives).
proposals = [torch.cat([gt + torch.randn(gt.shape, generator=g) * j for j in (1, 2, 3.5, 6)] + [boxes(10, w, h)])
             for gt, (w, h) in zip(gts, sizes)]
metas = [dict(img_shape=(90, 120), pad_shape=PAD, batch_input_shape=PAD, ori_shape=(72, 96), scale_factor=(1.25, 1.25)),
         dict(img_shape=(96, 100), pad_shape=PAD, batch_input_shape=PAD, ori_shape=(80, 80), scale_factor=(1.25, 1.2))]
samples = []
for gt, lab, m, meta in zip(gts, labels, masks, metas):
    s = DetDataSample(metainfo=meta)
    s.gt_instances = InstanceData(bboxes=gt, labels=lab, masks=BitmapMasks(m, *PAD))
    samples.append(s)

# ---- training: record what each stage sampled (CascadeRoIHead.loss looks both methods up on self)
train_rec = {}
bbox_loss, mask_loss = head.bbox_loss, head.mask_loss


def recording_bbox_loss(stage, x, sampling_results):
    r = bbox_loss(stage, x, sampling_results)
    train_rec[stage] = dict(rois=r['rois'].detach().clone(), cls_score=r['cls_score'].detach().clone(),
                            bbox_pred=r['bbox_pred'].detach().clone(), targets=[t.detach().clone() for t in r['bbox_targets']],
                            pos_is_gt=[res.pos_is_gt.clone() for res in sampling_results],
                            num_pos=[len(res.pos_inds) for res in sampling_results])
    return r


def recording_mask_loss(stage, x, sampling_results, batch_gt_instances):
    r = mask_loss(stage, x, sampling_results, batch_gt_instances)
    train_rec[stage]['mask_targets'] = r['mask_targets'].detach().clone()
    return r


head.bbox_loss, head.mask_loss = recording_bbox_loss, recording_mask_loss
head.train()
losses = head.loss(tuple(feats), [InstanceData(bboxes=p.clone()) for p in proposals], samples)
total = sum(v for k, v in losses.items() if 'loss' in k)
total.backward()

# ---- test: record each stage's input RoIs, cls logits and deltas, and the merged mask probabilities
test_rec = {}
bbox_forward = head._bbox_forward


def recording_bbox_forward(stage, x, rois):
    r = bbox_forward(stage, x, rois)
    test_rec[stage] = dict(rois=rois.clone(), cls_score=r['cls_score'].clone(), bbox_pred=r['bbox_pred'].clone())
    return r


mask_predict_by_feat = head.mask_head[-1].predict_by_feat


def recording_mask_predict_by_feat(mask_preds, results_list, **kwargs):
    test_rec['merged'] = [m.clone() for m in mask_preds]
    test_rec['boxes_img'] = [r.bboxes.clone() for r in results_list]  # before predict_by_feat rescales them in place
    return mask_predict_by_feat(mask_preds=mask_preds, results_list=results_list, **kwargs)


head._bbox_forward = recording_bbox_forward
head.mask_head[-1].predict_by_feat = recording_mask_predict_by_feat
head.eval()
with torch.no_grad():
    dets = head.predict(tuple(f.detach() for f in feats), [InstanceData(bboxes=p.clone()) for p in proposals], samples,
                        rescale=True)

# ---- write
t = {f"feat{i}": f.detach() for i, f in enumerate(feats)}
t.update({f"head.{k}": v.detach() for k, v in head.state_dict().items()})
for i in range(2):
    t[f"gt{i}"], t[f"labels{i}"], t[f"proposals{i}"] = gts[i], labels[i].float(), proposals[i]
    t[f"masks{i}"] = torch.from_numpy(masks[i])
    t[f"dets{i}.boxes"], t[f"dets{i}.scores"], t[f"dets{i}.labels"] = dets[i].bboxes, dets[i].scores, dets[i].labels.float()
    t[f"dets{i}.boxes_img"] = test_rec['boxes_img'][i]
    n = len(dets[i].bboxes)
    # stage-averaged sigmoid probabilities of the detected class only (what gets pasted), 28x28 per detection
    t[f"dets{i}.mask_probs"] = test_rec['merged'][i][torch.arange(n), dets[i].labels]
    t[f"dets{i}.masks"] = dets[i].masks.to(torch.uint8)
nums = [len(p) for p in proposals]
for s in range(3):
    r = train_rec[s]
    rois = r['rois']
    for i in range(2):
        sel = rois[:, 0] == i
        t[f"train.s{s}.rois{i}"] = rois[sel, 1:]
        t[f"train.s{s}.labels{i}"] = r['targets'][0][sel].float()
        t[f"train.s{s}.bbox_targets{i}"] = r['targets'][2][sel]
        t[f"train.s{s}.cls_score{i}"], t[f"train.s{s}.bbox_pred{i}"] = r['cls_score'][sel], r['bbox_pred'][sel]
        t[f"train.s{s}.pos_is_gt{i}"] = r['pos_is_gt'][i].to(torch.uint8)
    t[f"train.s{s}.mask_targets"] = r['mask_targets'].to(torch.uint8)
    q = test_rec[s]
    for i, (a, b) in enumerate(zip(q['rois'].split(nums), zip(q['cls_score'].split(nums), q['bbox_pred'].split(nums)))):
        t[f"test.s{s}.rois{i}"] = a[:, 1:]
        t[f"test.s{s}.cls_score{i}"], t[f"test.s{s}.bbox_pred{i}"] = b
for k, v in losses.items():
    t[f"loss.{k}"] = v.detach().reshape(1)
t["loss.total"] = total.detach().reshape(1)
for k, p in head.named_parameters():
    t[f"grad.head.{k}"] = p.grad
for i, f in enumerate(feats):
    t[f"grad.feat{i}"] = f.grad
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cascade_roi_head.safetensors")
save_file({k: v.contiguous() for k, v in t.items()}, out)
print("losses", {k: round(v.item(), 6) for k, v in losses.items()}, "total", total.item())
print("train rois per stage/image", [[int((train_rec[s]['rois'][:, 0] == i).sum()) for i in range(2)] for s in range(3)],
      "positives (incl. gts)", [train_rec[s]['num_pos'] for s in range(3)],
      "non-gt positives", [[int((1 - x).sum()) for x in train_rec[s]['pos_is_gt']] for s in range(3)])
print("dets", [len(d.bboxes) for d in dets], "top scores", [[round(float(v), 3) for v in d.scores[:5]] for d in dets],
      "mask pixels", [int(d.masks.sum()) for d in dets])
print("file bytes", os.path.getsize(out), "finite", all(bool(torch.isfinite(v).all()) for v in t.values() if v.is_floating_point()))
