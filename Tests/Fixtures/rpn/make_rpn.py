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
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4))
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
tensors = {f"feat{i}": f for i, f in enumerate(feats)}
tensors.update({f"head.{k}": v.detach() for k, v in head.state_dict().items()})
for i, r in enumerate(results):
    tensors[f"proposals{i}.boxes"] = r.bboxes
    tensors[f"proposals{i}.scores"] = r.scores
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(os.path.dirname(os.path.abspath(__file__)), "rpn.safetensors"))
print("proposals per image:", [len(r.bboxes) for r in results])
