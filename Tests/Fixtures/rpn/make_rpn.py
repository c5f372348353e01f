"""Reference vectors for the toolkit's RPN proposals: mmdet 3.3's RPNHead (one conv, anchors scales [8], ratios
0.5/1/2, strides 4-64) on fixed random weights and features, `predict_by_feat` with rescale off. Writes
rpn.safetensors beside this script.

usage: PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python Tests/Fixtures/rpn/make_rpn.py
"""
import os

import mmcv_tv_patch  # noqa: F401  (mmcv-lite has no compiled ops; see ../shared/mmref/README.md)
import torch
from mmengine.config import ConfigDict
from mmdet.models.dense_heads import RPNHead
from safetensors.torch import save_file

torch.manual_seed(0)
C = 8
head = RPNHead(in_channels=C, feat_channels=C,
               anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
               # as mmdet's faster_rcnn_r50_fpn.py sets them (AnchorHead's own default for loss_bbox is SmoothL1)
               loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
               loss_bbox=dict(type='L1Loss', loss_weight=1.0))
with torch.no_grad():   # spread-out weights: objectness and deltas of a trained head's size
    for name, p in head.named_parameters():
        p.copy_(torch.randn_like(p) * (0.3 if 'weight' in name else 1.0))
head.eval()
# Two images padded to 96x128 (img_shape 90x120 and 96x100); levels 24x32 ... 2x2 (mmdet's FPN pooling rounds up).
sizes = [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]
feats = [torch.randn(2, C, h, w) for h, w in sizes]
metas = [dict(img_shape=(90, 120), pad_shape=(96, 128)), dict(img_shape=(96, 100), pad_shape=(96, 128))]
cfg = ConfigDict(nms_pre=200, max_per_img=150, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0)
with torch.no_grad():
    cls, reg = head(tuple(feats))
    results = head.predict_by_feat(cls, reg, batch_img_metas=metas, cfg=cfg, rescale=False)
# Losses with a sampler that keeps every candidate (num far above the anchor count: no random draw to match).
from mmengine.structures import InstanceData  # noqa: E402
head.train_cfg = ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                                          match_low_quality=True, ignore_iof_thr=-1),
                            sampler=dict(type='RandomSampler', num=100000, pos_fraction=0.5, neg_pos_ub=-1,
                                         add_gt_as_proposals=False),
                            allowed_border=-1, pos_weight=-1, debug=False)
from mmdet.registry import TASK_UTILS  # noqa: E402
head.assigner = TASK_UTILS.build(head.train_cfg['assigner'])
head.sampler = TASK_UTILS.build(head.train_cfg['sampler'], default_args=dict(context=head))
head.train()
gts = [torch.tensor([[10., 12., 40., 50.], [60., 5., 118., 40.], [2., 60., 30., 88.]]),
       torch.tensor([[20., 20., 90., 90.], [50., 30., 58., 41.]])]
instances = [InstanceData(bboxes=b, labels=torch.zeros(len(b), dtype=torch.long)) for b in gts]
lfeats = [f.clone().requires_grad_(True) for f in feats]
cls, reg = head(tuple(lfeats))
losses = head.loss_by_feat(cls, reg, instances, metas)
total_cls, total_bbox = sum(losses['loss_rpn_cls']), sum(losses['loss_rpn_bbox'])
(total_cls + total_bbox).backward()

tensors = {f"feat{i}": f for i, f in enumerate(feats)}
tensors["loss.cls"] = total_cls.detach().reshape(1)
tensors["loss.bbox"] = total_bbox.detach().reshape(1)
for i, g in enumerate(gts):
    tensors[f"gt{i}"] = g
for i, f in enumerate(lfeats):
    tensors[f"grad.feat{i}"] = f.grad
for k, p in head.named_parameters():
    tensors[f"grad.head.{k}"] = p.grad
tensors.update({f"head.{k}": v.detach() for k, v in head.state_dict().items()})
for i, r in enumerate(results):
    tensors[f"proposals{i}.boxes"] = r.bboxes
    tensors[f"proposals{i}.scores"] = r.scores
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(os.path.dirname(os.path.abspath(__file__)), "rpn.safetensors"))
print("proposals per image:", [len(r.bboxes) for r in results], "losses:", float(total_cls), float(total_bbox))
