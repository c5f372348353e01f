"""Reference vectors for the toolkit's StandardRoIHead (boxes): mmdet 3.3's StandardRoIHead with a
Shared2FCBBoxHead on fixed random weights, features, proposals and ground truth. The sampler keeps every candidate
(num far above their count), so no random draw has to match across frameworks. Writes roi_head.safetensors.

usage: PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python Tests/Fixtures/roi_head/make_roi_head.py
"""
import os

import mmcv_tv_patch  # noqa: F401  (mmcv-lite has no compiled ops; see ../shared/mmref/README.md)
import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from safetensors.torch import save_file

torch.manual_seed(0)
C, NC = 4, 3
train_cfg = ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                     match_low_quality=False, ignore_iof_thr=-1),
                       sampler=dict(type='RandomSampler', num=100000, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
                       pos_weight=-1, debug=False)
test_cfg = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
head = StandardRoIHead(
    bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                            out_channels=C, featmap_strides=[4, 8, 16, 32]),
    bbox_head=dict(type='Shared2FCBBoxHead', in_channels=C, fc_out_channels=16, roi_feat_size=7, num_classes=NC,
                   bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                   reg_class_agnostic=False, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=train_cfg, test_cfg=test_cfg)
with torch.no_grad():
    for name, p in head.named_parameters():
        p.copy_(torch.randn_like(p) * (0.3 if 'weight' in name else 0.5))
feats = [torch.randn(2, C, 96 // s, 128 // s, requires_grad=True) for s in [4, 8, 16, 32]]
g = torch.Generator().manual_seed(5)


def boxes(n, w, h):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 8 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
    return torch.cat([xy, (xy + wh).clamp(max=torch.tensor([float(w), float(h)]))], 1)


gts = [boxes(3, 120, 90), boxes(2, 100, 96)]
labels = [torch.tensor([0, 2, 1]), torch.tensor([1, 1])]
# Proposals: jittered copies of the ground truth (positives) and random boxes (mostly negatives).
proposals = [torch.cat([gt + torch.randn(gt.shape, generator=g) * 4 for _ in range(4)] + [boxes(30, w, h)])
             for gt, (w, h) in zip(gts, [(120, 90), (100, 96)])]
metas = [dict(img_shape=(90, 120), pad_shape=(96, 128), scale_factor=(0.5, 0.5)),
         dict(img_shape=(96, 100), pad_shape=(96, 128), scale_factor=(0.8, 0.75))]
samples = []
for gt, lab, meta in zip(gts, labels, metas):
    s = DetDataSample(metainfo=meta)
    s.gt_instances = InstanceData(bboxes=gt, labels=lab)
    samples.append(s)
rpn_results = [InstanceData(bboxes=p) for p in proposals]
head.train()
losses = head.loss(tuple(feats), rpn_results, samples)
(losses['loss_cls'] + losses['loss_bbox']).backward()
head.eval()
with torch.no_grad():
    dets = head.predict(tuple(f.detach() for f in feats), [InstanceData(bboxes=p) for p in proposals], samples, rescale=True)
t = {f"feat{i}": f.detach() for i, f in enumerate(feats)}
t.update({f"head.{k}": v.detach() for k, v in head.state_dict().items()})
for i in range(2):
    t[f"gt{i}"], t[f"labels{i}"], t[f"proposals{i}"] = gts[i], labels[i].float(), proposals[i]
    t[f"dets{i}.boxes"], t[f"dets{i}.scores"], t[f"dets{i}.labels"] = dets[i].bboxes, dets[i].scores, dets[i].labels.float()
t["loss.cls"], t["loss.bbox"] = losses['loss_cls'].detach().reshape(1), losses['loss_bbox'].detach().reshape(1)
for k, p in head.named_parameters():
    t[f"grad.head.{k}"] = p.grad
for i, f in enumerate(feats):
    t[f"grad.feat{i}"] = f.grad
save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(os.path.dirname(os.path.abspath(__file__)), "roi_head.safetensors"))
print("losses", float(losses['loss_cls']), float(losses['loss_bbox']), "acc", float(losses['acc']), "dets", [len(d.bboxes) for d in dets])
