"""Writes seg_heads.safetensors: mmseg's segmentation heads and EncoderDecoder inference computed in PyTorch, for
SegmentationTests/ReferenceTests.swift.

The modules below restate mmseg 0.x / mmcv (ConvModule conv→bn|gn→ReLU with bias='auto', PPM, UPerHead, FCNHead,
FPNHead with mmseg's Upsample, BaseDecodeHead.cls_seg, CrossEntropyLoss with avg_non_ignore=False, slide_inference)
in plain torch with the same attribute names, so their state dicts carry mmseg's keys.

usage: ../shared/peer/setup.sh && ~/.acmix-peer/bin/python Tests/SegmentationTests/Reference/make_reference.py
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


def resize(x, size):
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, norm='bn', act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=norm is None)
        self.norm_name = norm
        if norm == 'bn':
            self.bn = nn.BatchNorm2d(cout)
        elif norm == 'gn':
            self.gn = nn.GroupNorm(4, cout)
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        if self.norm_name:
            x = getattr(self, self.norm_name)(x)
        return F.relu(x) if self.act else x


class Upsample(nn.Module):
    def forward(self, x):
        return resize(x, [int(t * 2.0) for t in x.shape[-2:]])


class PPM(nn.ModuleList):
    def __init__(self, scales, cin, ch):
        super().__init__([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(cin, ch, 1)) for s in scales])

    def forward(self, x):
        return [resize(m(x), x.shape[2:]) for m in self]


class UPerHead(nn.Module):
    def __init__(self, in_channels, ch, num_classes, scales=(1, 2, 3, 6)):
        super().__init__()
        self.psp_modules = PPM(scales, in_channels[-1], ch)
        self.bottleneck = ConvModule(in_channels[-1] + len(scales) * ch, ch, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvModule(c, ch, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(ch, ch, 3, padding=1) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(in_channels) * ch, ch, 3, padding=1)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, inputs):
        laterals = [l(inputs[i]) for i, l in enumerate(self.lateral_convs)]
        x = inputs[-1]
        laterals.append(self.bottleneck(torch.cat([x] + self.psp_modules(x), dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1))))


class FCNHead(nn.Module):
    def __init__(self, cin, ch, num_classes, in_index=2):
        super().__init__()
        self.in_index = in_index
        self.convs = nn.Sequential(ConvModule(cin, ch, 3, padding=1))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, inputs):
        return self.conv_seg(self.dropout(self.convs(inputs[self.in_index])))


class FPNHead(nn.Module):
    def __init__(self, in_channels, strides, ch, num_classes, norm):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for i, s in enumerate(strides):
            n = max(1, int(math.log2(s) - math.log2(strides[0])))
            layers = []
            for k in range(n):
                layers.append(ConvModule(in_channels[i] if k == 0 else ch, ch, 3, padding=1, norm=norm))
                if s != strides[0]:
                    layers.append(Upsample())
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, inputs):
        out = self.scale_heads[0](inputs[0])
        for i in range(1, len(self.scale_heads)):
            out = out + resize(self.scale_heads[i](inputs[i]), out.shape[2:])
        return self.conv_seg(self.dropout(out))


class TinyBackbone(nn.Module):
    """Tests/SegmentationTests/Support.swift's TinyBackbone."""
    def __init__(self, channels=(8, 16, 32, 64)):
        super().__init__()
        self.stem = ConvModule(3, channels[0], 3, 2, 1)
        prev = [channels[0]] + list(channels[:-1])
        self.stages = nn.ModuleList([ConvModule(p, c, 3, 2, 1) for p, c in zip(prev, channels)])

    def forward(self, x):
        y = self.stem(x)
        outs = []
        for s in self.stages:
            y = s(y)
            outs.append(y)
        return outs


class EncoderDecoder(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.backbone = TinyBackbone()
        self.decode_head = UPerHead([8, 16, 32, 64], 16, num_classes)
        self.auxiliary_head = FCNHead(32, 8, num_classes)
        self.num_classes = num_classes

    def encode_decode(self, img):
        return resize(self.decode_head(self.backbone(img)), img.shape[2:])

    def slide_inference(self, img, crop, stride, ori_shape):
        (h_stride, w_stride), (h_crop, w_crop) = stride, crop
        b, _, h_img, w_img = img.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds = img.new_zeros((b, self.num_classes, h_img, w_img))
        count_mat = img.new_zeros((b, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y1, x1 = h_idx * h_stride, w_idx * w_stride
                y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                logit = self.encode_decode(img[:, :, y1:y2, x1:x2])
                preds += F.pad(logit, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
                count_mat[:, :, y1:y2, x1:x2] += 1
        assert (count_mat == 0).sum() == 0
        return resize(preds / count_mat, ori_shape)


def mmseg_cross_entropy(logits, label, class_weight, ignore_index=255):
    """mmseg 0.x CrossEntropyLoss(loss_weight=1, avg_non_ignore=False) after BaseDecodeHead's resize."""
    logits = resize(logits, label.shape[1:])
    loss = F.cross_entropy(logits, label, weight=class_weight, reduction='none', ignore_index=ignore_index)
    return loss.mean()


def randomise(module, gen):
    """Non-trivial values for every tensor, BN running statistics included, so eval-mode BN is exercised."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith('.weight') and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * 0.3)


def main():
    gen = torch.Generator().manual_seed(0)
    out = {}

    def rand(*shape):
        return torch.rand(shape, generator=gen) * 2 - 1

    def prefixed(prefix, module):
        return {f'{prefix}.{k}': v.clone() for k, v in module.state_dict().items()}

    levels = [rand(2, 8, 15, 13), rand(2, 16, 8, 7), rand(2, 32, 4, 4), rand(2, 64, 2, 2)]
    for i, l in enumerate(levels):
        out[f'levels.{i}'] = l

    uper = UPerHead([8, 16, 32, 64], 16, 5)
    randomise(uper, gen)
    uper.eval()
    out.update(prefixed('uper', uper))
    out['out.uper'] = uper(levels).detach()

    fcn = FCNHead(32, 8, 5)
    randomise(fcn, gen)
    fcn.eval()
    out.update(prefixed('fcn', fcn))
    out['out.fcn'] = fcn(levels).detach()

    fpn_levels = [rand(2, 8, 15, 13), rand(2, 8, 8, 7), rand(2, 8, 4, 4), rand(2, 8, 2, 2)]
    for i, l in enumerate(fpn_levels):
        out[f'fpn_levels.{i}'] = l
    for norm in ['bn', 'gn']:
        fpn = FPNHead([8] * 4, [4, 8, 16, 32], 8, 5, norm)
        randomise(fpn, gen)
        fpn.eval()
        out.update(prefixed(f'fpn_{norm}', fpn))
        out[f'out.fpn_{norm}'] = fpn(fpn_levels).detach()

    # Loss on quarter-resolution logits against full-size labels with ignored pixels and class weights.
    logits = rand(2, 5, 6, 5).requires_grad_(True)
    label = torch.randint(0, 5, (2, 23, 19), generator=gen)
    label[torch.rand(label.shape, generator=gen) < 0.2] = 255
    class_weight = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.75])
    loss = mmseg_cross_entropy(logits, label, class_weight)
    loss.backward()
    out['loss.logits'] = logits.detach()
    out['loss.label'] = label.float()
    out['loss.class_weight'] = class_weight
    out['loss.value'] = loss.detach().reshape(1)
    out['loss.grad'] = logits.grad

    # Whole and slide inference of a tiny UperNet, rescaled to an "original" size.
    model = EncoderDecoder(5)
    randomise(model, gen)
    model.eval()
    out.update(prefixed('model', model))
    img = rand(1, 3, 45, 61)
    out['infer.img'] = img
    with torch.no_grad():
        out['infer.whole'] = resize(model.encode_decode(img), (50, 70))
        out['infer.slide'] = model.slide_inference(img, (32, 32), (20, 20), (50, 70))

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seg_heads.safetensors')
    save_file({k: v.contiguous().float() for k, v in out.items()}, path)
    print(f'wrote {path}: {len(out)} tensors')


if __name__ == '__main__':
    main()
