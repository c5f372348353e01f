"""Reference vectors for the toolkit's multi-level RoI extractor: mmdet 3.3's SingleRoIExtractor with
RoIAlign(output_size=7, sampling_ratio=0) over strides 4, 8, 16, 32 (finest_scale 56), run on CPU through
../shared/mmref. Writes roi_extractor.safetensors beside this script.

usage: PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python Tests/Fixtures/roi_align/make_roi_extractor.py
"""
import os

import mmcv_tv_patch  # noqa: F401  (mmcv-lite has no compiled ops; see ../shared/mmref/README.md)
import torch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from safetensors.torch import save_file

torch.manual_seed(0)
C = 4
extractor = SingleRoIExtractor(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0), out_channels=C,
                               featmap_strides=[4, 8, 16, 32])
# A 2-image batch padded to 96x128: levels of 24x32, 12x16, 6x8, 3x4.
feats = [torch.randn(2, C, 96 // s, 128 // s, requires_grad=True) for s in [4, 8, 16, 32]]
g = torch.Generator().manual_seed(3)
boxes = []
for b in range(2):
    for side in [8, 20, 40, 56, 70, 111.9, 112.1, 130, 200, 300, 460, 700]:   # around the level boundaries 56·2^k
        cx, cy = float(torch.rand(1, generator=g)) * 128, float(torch.rand(1, generator=g)) * 96
        w = side * (0.6 + 0.8 * float(torch.rand(1, generator=g)))
        h = side * side / w
        boxes.append([b, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
rois = torch.tensor(boxes, dtype=torch.float32)
out = extractor(tuple(feats), rois)
grad = torch.randn(out.shape, generator=g)
out.backward(grad)
tensors = {"rois": rois, "output": out.detach(), "grad_output": grad,
           "levels": extractor.map_roi_levels(rois, 4).to(torch.float32)}
for i, f in enumerate(feats):
    tensors[f"feat{i}"] = f.detach()
    tensors[f"grad_feat{i}"] = f.grad
save_file({k: v.contiguous() for k, v in tensors.items()},
          os.path.join(os.path.dirname(os.path.abspath(__file__)), "roi_extractor.safetensors"))
print("wrote", len(tensors), "tensors; rois per level:", torch.bincount(tensors["levels"].long(), minlength=4).tolist())
