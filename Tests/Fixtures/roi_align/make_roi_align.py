"""Reference vectors for the toolkit's RoIAlign: torchvision.ops.roi_align, which mmcv's RoIAlign equals
(checked in ../shared/mmref: difference 0.0, aligned or not). Writes roi_align.safetensors beside this script.

usage: ~/.mmref/bin/python Tests/Fixtures/roi_align/make_roi_align.py
"""
import os

import torch
from safetensors.torch import save_file
from torchvision.ops import roi_align

torch.manual_seed(0)
feats = torch.randn(2, 3, 13, 17, dtype=torch.float32)
# (batch index, x1, y1, x2, y2) in input pixels; spatial scale 1/4 maps them onto the 13x17 map (a 52x68 image).
rois = torch.tensor([
    [0, 4.0, 6.0, 40.0, 30.0],      # inside
    [1, 0.0, 0.0, 68.0, 52.0],      # the whole image
    [0, -10.0, -6.0, 12.0, 9.0],    # crossing the top-left border
    [1, 50.0, 40.0, 90.0, 70.0],    # crossing the bottom-right border, partly more than a pixel outside
    [0, 20.5, 11.25, 22.0, 13.0],   # smaller than a bin
    [1, 30.0, 30.0, 30.0, 30.0],    # empty
    [0, 7.3, 3.9, 61.7, 48.2],      # non-integer corners
], dtype=torch.float32)
out = {"features": feats, "rois": rois}
for name, (size, scale, ratio, aligned) in {
    "a7s0": ((7, 7), 0.25, 0, True),
    "a7s2": ((7, 7), 0.25, 2, True),
    "a14s0": ((14, 14), 0.25, 0, True),
    "u5x3s0": ((5, 3), 0.25, 0, False),
}.items():
    x = feats.clone().requires_grad_(True)
    y = roi_align(x, rois, size, spatial_scale=scale, sampling_ratio=ratio, aligned=aligned)
    g = torch.randn_like(y, generator=torch.Generator().manual_seed(1))
    y.backward(g)
    out[f"{name}.output"] = y.detach()
    out[f"{name}.grad_output"] = g
    out[f"{name}.grad_features"] = x.grad.detach()
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(os.path.dirname(os.path.abspath(__file__)), "roi_align.safetensors"))
print("wrote", len(out), "tensors")
