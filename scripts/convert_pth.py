#!/usr/bin/env python3
"""Convert the authors' ACmix / Swin PyTorch checkpoints (.pth) to .safetensors for ACmixKit.

usage: scripts/convert_pth.py MODEL.pth OUT.safetensors [--key model|state_dict]

Keys are kept exactly as in the checkpoint (a leading 'module.' from DataParallel is dropped); float tensors are
written as float32, integer buffers (relative_position_index, num_batches_tracked) as int64. The toolkit itself
needs no Python: this is only for users who hold the authors' .pth files. Needs torch and safetensors
(pip install torch safetensors).
"""
import argparse
import sys

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--key", default=None, help="sub-dictionary holding the weights (auto: 'model', 'state_dict')")
    a = ap.parse_args()
    try:
        ckpt = torch.load(a.src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear line for any unreadable file
        sys.exit(f"{a.src}: cannot load checkpoint: {e}")
    sd = ckpt
    for k in ([a.key] if a.key else ["model", "state_dict"]):
        if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
            sd = sd[k]
            break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        sys.exit(f"{a.src}: no state dict of tensors found (try --key)")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = v.detach().contiguous().to(torch.float32 if v.is_floating_point() else torch.int64)
    save_file(out, a.dst, metadata={"source": a.src})
    print(f"wrote {len(out)} tensors to {a.dst}")


if __name__ == "__main__":
    main()
