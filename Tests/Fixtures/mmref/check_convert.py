#!/usr/bin/env python3
"""Checks scripts/convert_pth.py against mmdetection 3.3 / mmsegmentation 1.2 backbones, numerically, through the
toolkit's own `export-features` binary (not rebuilt here).

  1. mmdet's and mmseg's SwinTransformer (Swin-T dims, random weights, every norm and bias randomised, out_indices
     0-3) saved as mmdet-3.x / mmseg-1.x checkpoints → convert_pth.py → `export-features --arch swin_tiny --mode
     dense` → the four stage outputs against mmdet's / mmseg's backbone outputs, on a 224x224 input and on one whose
     sides are not multiples of 4 (patch padding) nor of the window (block padding), with odd maps (merge padding).
  2. The Swin key mapping is the exact inverse of mmdet's swin_converter: the authors' layout (the peer model's keys)
     → mmdet's `swin_converter` → convert_pth.py gives back every tensor bit for bit.
  3. mmdet's ResNet-50 (eval, random BN statistics and affine parameters) → `export-features --arch resnet50`.
  4. A real mmengine checkpoint (message hub, ConfigDict meta) loads without unpickling arbitrary objects.

usage (from the repository root; see Tests/Fixtures/mmref/README.md for the environment):
  PYTHONPATH=../shared/mmref:../shared/peer ~/.mmref/bin/python Tests/Fixtures/mmref/check_convert.py \
      [--binary .build/release/export-features] [--work /tmp/mmref-check]
Prints one JSON line per comparison; exits 1 when a difference exceeds its tolerance.
"""
import argparse
import json
import os
import subprocess
import sys

import mmcv_tv_patch  # noqa: F401  (must precede mmdet / mmseg model imports)
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONVERT = os.path.join(ROOT, "scripts", "convert_pth.py")


def randomise(model, seed, linear_std=0.05):
    """Every parameter and BN buffer random, so that a wrong permutation or a swapped tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() == 1 and last == "weight":          # norms
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif last == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 4:                                # convs: keep activations O(1) (fan-in scaling)
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * linear_std)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


def convert(src, dst, extra=()):
    if os.path.exists(dst):
        os.remove(dst)
    r = run([sys.executable, CONVERT, src, dst, *extra])
    return r.stdout.strip(), r.stderr.strip()


def export(binary, arch, mode, weights, x, work, tag):
    inp, out = os.path.join(work, f"{tag}_input.safetensors"), os.path.join(work, f"{tag}_out.safetensors")
    for f in (inp, out):
        if os.path.exists(f):
            os.remove(f)
    save_file({"input": x.contiguous()}, inp)
    run([binary, "--arch", arch, "--mode", mode, "--weights", weights, "--input", inp, "--output", out])
    return load_file(out)


def compare(name, ref, ours, names, tol):
    rows = []
    worst = 0.0
    for r, n in zip(ref, names):
        o = ours[n]
        assert tuple(o.shape) == tuple(r.shape), f"{name} {n}: shape {tuple(o.shape)} vs mm {tuple(r.shape)}"
        d = (o - r).abs().max().item()
        rows.append({"out": n, "shape": list(r.shape), "max_abs_diff": d, "max_abs_ref": r.abs().max().item()})
        worst = max(worst, d)
    ok = worst <= tol
    print(json.dumps({"check": name, "ok": ok, "tolerance": tol, "outputs": rows}))
    return ok


def swin_check(binary, work, family, sizes):
    if family == "mmdet":
        from mmdet.models.backbones import SwinTransformer
    else:
        from mmseg.models.backbones import SwinTransformer
    torch.manual_seed(0)
    m = SwinTransformer(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                        out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
    randomise(m, seed=1 if family == "mmdet" else 2)
    m.eval()
    pth = os.path.join(work, f"{family}_swin_t.pth")
    meta = {"dataset_meta": {"classes": ("a", "b")}, "mmengine_version": "0.10.7"}
    torch.save({"state_dict": {"backbone." + k: v for k, v in m.state_dict().items()}, "meta": meta}, pth)
    st = os.path.join(work, f"{family}_swin_t.safetensors")
    out, err = convert(pth, st)
    ok = True
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(10 + i))
        with torch.no_grad():
            ref = m(x)
        ours = export(binary, "swin_tiny", "dense", st, x, work, f"{family}_swin_{h}x{w}")
        ok &= compare(f"{family} SwinTransformer (Swin-T) {h}x{w}", ref, ours, [f"stage{j}" for j in range(1, 5)], 1e-4)
    return ok, out, err


def roundtrip_check(work):
    """authors' keys → mmdet swin_converter → convert_pth.py == the authors' tensors, exactly."""
    import acmix_torch
    from mmdet.models.backbones.swin import swin_converter
    torch.manual_seed(3)
    authors = acmix_torch.build("swin_tiny").state_dict()
    g = torch.Generator().manual_seed(4)
    authors = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v) for k, v in authors.items()}
    mm = swin_converter(authors)        # 'backbone.' keys, head dropped, reduction/norm in nn.Unfold order
    pth = os.path.join(work, "authors_via_swin_converter.pth")
    torch.save({"state_dict": mm, "meta": {}}, pth)
    st = os.path.join(work, "authors_via_swin_converter.safetensors")
    convert(pth, st)
    back = load_file(st)
    diffs, absent = 0, []
    for k, v in authors.items():
        if k.startswith("head."):
            continue
        b = back.get("backbone." + k)
        if b is None:
            absent.append(k)
            continue
        diffs += int(not torch.equal(b.to(v.dtype) if not v.is_floating_point() else b, v))
    extra = sorted(set(back) - {"backbone." + k for k in authors})
    ok = diffs == 0 and not absent and not extra
    print(json.dumps({"check": "authors -> mmdet swin_converter -> convert_pth == authors (bitwise)", "ok": ok,
                      "tensors": len(back), "differing": diffs, "absent": absent, "extra": extra}))
    return ok


def resnet_check(binary, work, size):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    m = ResNet(depth=50, out_indices=(0, 1, 2, 3), norm_eval=True, frozen_stages=-1)
    randomise(m, seed=5)
    m.eval()
    pth = os.path.join(work, "mmdet_r50.pth")
    torch.save({"state_dict": {"backbone." + k: v for k, v in m.state_dict().items()},
                "meta": {"mmdet_version": "2.28.2", "CLASSES": ("x",)}}, pth)
    st = os.path.join(work, "mmdet_r50.safetensors")
    out, err = convert(pth, st)
    h, w = size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = m(x)
    ours = export(binary, "resnet50", "dense", st, x, work, f"r50_{h}x{w}")
    return compare(f"mmdet ResNet-50 {h}x{w}", ref, ours, ["c2", "c3", "c4", "c5"], 1e-3), out, err


def mmengine_checkpoint_check(work):
    """A checkpoint as mmengine's Runner writes it (HistoryBuffer, ConfigDict, numpy in meta / message_hub)."""
    import numpy as np
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    from mmdet.models.backbones import ResNet
    m = ResNet(depth=18, out_indices=(0, 1, 2, 3))
    pth = os.path.join(work, "mmengine_style.pth")
    hb = HistoryBuffer()
    hb.update(1.5)
    torch.save({"meta": {"cfg": "model = dict()", "epoch": 1, "iter": 10, "seed": np.int64(0),
                         "dataset_meta": ConfigDict(classes=("cat", "dog"), palette=[(1, 2, 3), (4, 5, 6)]),
                         "mmengine_version": "0.10.7"},
                "state_dict": {"backbone." + k: v for k, v in m.state_dict().items()},
                "message_hub": {"log_scalars": {"loss": hb}}}, pth)
    st = os.path.join(work, "mmengine_style.safetensors")
    r = subprocess.run([sys.executable, CONVERT, pth, st], capture_output=True, text=True)
    # ResNet-18's BasicBlocks are not a model ACmixKit has (two 3x3 convs, no conv3): unknown or missing is fine here,
    # what is checked is that the file loads (exit 0 or 1 with a key listing, never a load error).
    loaded = "cannot load checkpoint" not in r.stderr
    print(json.dumps({"check": "mmengine checkpoint (HistoryBuffer, ConfigDict, numpy in meta) loads", "ok": loaded,
                      "exit": r.returncode, "stderr_head": r.stderr.splitlines()[:3]}))
    return loaded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "export-features"))
    ap.add_argument("--work", default="/tmp/mmref-check")
    a = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(a.work, exist_ok=True)
    ok = True
    for family in ("mmdet", "mmseg"):
        r, out, err = swin_check(a.binary, a.work, family, [(224, 224), (183, 250)])
        print(json.dumps({"convert": family + " swin", "stdout": out, "stderr": err}))
        ok &= r
    ok &= roundtrip_check(a.work)
    r, out, err = resnet_check(a.binary, a.work, (200, 264))
    print(json.dumps({"convert": "mmdet resnet50", "stdout": out, "stderr": err}))
    ok &= r
    ok &= mmengine_checkpoint_check(a.work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
