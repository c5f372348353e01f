#!/usr/bin/env python3
"""Reference vectors for the toolkit's ResNetV1c (`resnet50_v1c`: mmseg's deep-stem ResNet-50, the backbone of
mmseg's Semantic FPN / UPerNet R50 zoo models): mmseg 1.2's ResNetV1c at base and stem width 8 with random weights
and BN statistics, in eval mode, written as an mmseg checkpoint, converted with scripts/convert_pth.py, and its four
stage outputs on a fixed input. Writes resnet50_v1c_w8.pth, resnet50_v1c_w8.safetensors (converted, our keys with
the backbone. prefix) and resnet50_v1c_w8_io.safetensors (input, c2..c5).

usage: PYTHONPATH=../shared/mmref ~/.mmref/bin/python Tests/Fixtures/mmref/make_resnet_v1c.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (imports mmcv_tv_patch first)
import torch  # noqa: E402
from mmseg.models.backbones import ResNetV1c  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.manual_seed(0)
net = ResNetV1c(depth=50, base_channels=8, stem_channels=8, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 1),
                strides=(1, 2, 2, 2), norm_eval=False, style="pytorch", contract_dilation=True)
net.init_weights()
mf.randomise_bn_and_convs(net, seed=3)
with torch.no_grad():
    for t in net.state_dict(keep_vars=True).values():
        if t.is_floating_point():
            t.copy_(t.half().float())
net.eval()


class Wrapper(torch.nn.Module):
    """The backbone under the `backbone.` prefix, as in an mmseg segmentor's state dict."""
    def __init__(self, b):
        super().__init__()
        self.backbone = b


pth = os.path.join(mf.HERE, "resnet50_v1c_w8.pth")
sd = {k: (v.half() if v.is_floating_point() else v) for k, v in Wrapper(net).state_dict().items()}
torch.save({"state_dict": sd, "meta": {"note": "random weights, Tests/Fixtures/mmref/make_resnet_v1c.py"}}, pth)
print(mf.convert(pth, os.path.join(mf.HERE, "resnet50_v1c_w8.safetensors"), Wrapper(net)))
x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
with torch.no_grad():
    outs = net(x)
save_file({"input": x, **{f"c{i + 2}": o.contiguous() for i, o in enumerate(outs)}},
          os.path.join(mf.HERE, "resnet50_v1c_w8_io.safetensors"))
print([tuple(o.shape) for o in outs], [float(o.abs().mean()) for o in outs])
