"""Reference vectors for the toolkit's Mask R-CNN RoI head: mmdet 3.3's StandardRoIHead with a Shared2FCBBoxHead and
an FCNMaskHead on fixed random weights, features, proposals and ground truth (boxes + instance masks at the padded
input size, as DetDataPreprocessor(pad_mask=True) gives them). The sampler keeps every candidate, so no random draw
has to match across frameworks. Records the mask targets, the three losses and their gradients, and the detections
with their pasted masks (rescale=True: original image size). Writes mask_head.safetensors.

usage: PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python Tests/Fixtures/mask_head/make_mask_head.py [SEED]
"""
import os
import sys

import mmcv_tv_patch  # noqa: F401  (mmcv-lite has no compiled ops; see ../shared/mmref/README.md)
import numpy as np
import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from safetensors.torch import save_file

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
torch.manual_seed(seed)
C, NC, PAD = 4, 3, (96, 128)
train_cfg = ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                     match_low_quality=False, ignore_iof_thr=-1),
                       sampler=dict(type='RandomSampler', num=100000, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
                       mask_size=28, pos_weight=-1, debug=False)
test_cfg = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)
extractor = lambda size: dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=size, sampling_ratio=0),
                              out_channels=C, featmap_strides=[4, 8, 16, 32])
head = StandardRoIHead(
    bbox_roi_extractor=extractor(7),
    bbox_head=dict(type='Shared2FCBBoxHead', in_channels=C, fc_out_channels=16, roi_feat_size=7, num_classes=NC,
                   bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                   reg_class_agnostic=False, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    mask_roi_extractor=extractor(14),
    mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=C, conv_out_channels=8, num_classes=NC,
                   loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)),
    train_cfg=train_cfg, test_cfg=test_cfg)
with torch.no_grad():
    for name, p in head.named_parameters():
        p.copy_(torch.randn_like(p) * (0.3 if 'weight' in name else 0.5))
feats = [torch.randn(2, C, PAD[0] // s, PAD[1] // s, requires_grad=True) for s in [4, 8, 16, 32]]
g = torch.Generator().manual_seed(5 + seed)


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
proposals = [torch.cat([gt + torch.randn(gt.shape, generator=g) * 4 for _ in range(4)] + [boxes(30, w, h)])
             for gt, (w, h) in zip(gts, sizes)]
metas = [dict(img_shape=(90, 120), pad_shape=PAD, batch_input_shape=PAD, ori_shape=(180, 240), scale_factor=(0.5, 0.5)),
         dict(img_shape=(96, 100), pad_shape=PAD, batch_input_shape=PAD, ori_shape=(128, 125), scale_factor=(0.8, 0.75))]
samples = []
for gt, lab, m, meta in zip(gts, labels, masks, metas):
    s = DetDataSample(metainfo=meta)
    s.gt_instances = InstanceData(bboxes=gt, labels=lab, masks=BitmapMasks(m, *PAD))
    samples.append(s)

captured = {}
get_targets = head.mask_head.get_targets


def recording_get_targets(*args, **kwargs):
    captured['targets'] = get_targets(*args, **kwargs)
    return captured['targets']


head.mask_head.get_targets = recording_get_targets
head.train()
losses = head.loss(tuple(feats), [InstanceData(bboxes=p) for p in proposals], samples)
(losses['loss_cls'] + losses['loss_bbox'] + losses['loss_mask']).backward()
head.eval()
with torch.no_grad():
    dets = head.predict(tuple(f.detach() for f in feats), [InstanceData(bboxes=p) for p in proposals], samples, rescale=True)
t = {f"feat{i}": f.detach() for i, f in enumerate(feats)}
t.update({f"head.{k}": v.detach() for k, v in head.state_dict().items()})
for i in range(2):
    t[f"gt{i}"], t[f"labels{i}"], t[f"proposals{i}"] = gts[i], labels[i].float(), proposals[i]
    t[f"masks{i}"] = torch.from_numpy(masks[i])
    t[f"dets{i}.boxes"], t[f"dets{i}.scores"], t[f"dets{i}.labels"] = dets[i].bboxes, dets[i].scores, dets[i].labels.float()
    t[f"dets{i}.masks"] = dets[i].masks.to(torch.uint8)
t["mask_targets"] = captured['targets']
for k in ['cls', 'bbox', 'mask']:
    t[f"loss.{k}"] = losses[f'loss_{k}'].detach().reshape(1)
for k, p in head.named_parameters():
    t[f"grad.head.{k}"] = p.grad
for i, f in enumerate(feats):
    t[f"grad.feat{i}"] = f.grad
name = "mask_head.safetensors" if seed == 0 else f"mask_head_seed{seed}.safetensors"
save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(os.path.dirname(os.path.abspath(__file__)), name))
print("losses", {k: float(v) for k, v in losses.items()}, "targets", tuple(captured['targets'].shape),
      "dets", [len(d.bboxes) for d in dets], "mask pixels", [int(d.masks.sum()) for d in dets])
