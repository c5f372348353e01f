#!/usr/bin/env python3
"""Convert PyTorch checkpoints (.pth) to .safetensors state dicts with ACmixKit's keys.

usage: scripts/convert_pth.py MODEL.pth OUT.safetensors [--key model|state_dict] [--allow-unknown] [--keep-unknown]
                              [--strict] [--dtype float32|float16|bfloat16] [--list]

Reads, and tells apart by their keys:
  - the ACmix authors' and the official Swin repos' files (classification `{"model": ...}`, and the
    Swin-Transformer-Object-Detection / -Semantic-Segmentation checkpoints, mmdet 2.x / mmseg 0.x based): their keys
    are already ours and are kept as they are;
  - torchvision ResNet state dicts, kept as they are;
  - mmdetection 2.x / 3.x and mmsegmentation 0.x / 1.x checkpoints (`{"state_dict": ..., "meta": ...}`) with
    ResNet (style 'pytorch') or mmdet's / mmseg's own `SwinTransformer`, FPN, RetinaHead, UPerHead, FCNHead, FPNHead.
    mmdet/mmseg Swin keys are mapped to the authors' layout, the exact inverse of mmdet's / mmseg's `swin_converter`:
        stages.i.blocks.j.attn.w_msa.{qkv,proj,relative_position_bias_table}  -> layers.i.blocks.j.attn.*
        stages.i.blocks.j.ffn.layers.0.0 / ffn.layers.1                      -> layers.i.blocks.j.mlp.fc1 / mlp.fc2
        patch_embed.projection                                                -> patch_embed.proj
        stages.i.downsample.{reduction.weight, norm.*}                        -> layers.i.downsample.*, with the 4C
            input channels permuted from mmcv's nn.Unfold order back to the authors' concat(x0, x1, x2, x3) order
        norm0..norm3 (per-stage output norms)                                 -> unchanged
    Heads keep mmdet's / mmseg's keys (neck.*, bbox_head.*, decode_head.*, auxiliary_head.*), which are ours.

A leading 'module.' (DataParallel) is dropped. Float tensors are written as float32 (or --dtype: float16 / bfloat16
halve the file; ACmixKit reads them back as float32), integer buffers (relative_position_index, num_batches_tracked)
as int64. Every key of the source ends up in the output under our
name, or is listed on stderr: keys that are not weights of a model ACmixKit has (e.g. a Cascade R-CNN's heads, a deep
ResNet stem, absolute_pos_embed) are "unknown", and the script exits with status 1 listing them unless
--allow-unknown (drop them, listed) or --keep-unknown (write them under their original names). Incomplete modules
(a block without its mlp, a BatchNorm without running_var, ...) are listed as missing; --strict makes that an error
too. The safetensors metadata records the source, the detected format and, when the checkpoint's meta has them,
the class names and palette (JSON).

Checkpoints are read with torch's weights-only unpickler. Files whose metadata holds other Python objects (mmengine
checkpoints carry a message hub, ConfigDicts, numpy scalars) are read with those objects replaced by inert stand-ins:
no code from the file runs. Needs torch and safetensors (pip install torch safetensors); the toolkit itself needs
no Python.
"""
import argparse
import json
import os
import pickle
import re
import sys
import warnings
from collections import OrderedDict

import torch

# ----------------------------------------------------------------------------------------------------------- loading


def _inert_class(fullname):
    """A stand-in for a global the weights-only unpickler refuses: accepts any construction and state, does nothing."""
    module, _, name = fullname.rpartition(".")

    def init(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], dict):   # dict subclasses pickle as Class({...})
            self.update(args[0])
        self.__dict__["_args"] = args

    def setstate(self, state):
        if isinstance(state, dict):
            self.update(state)
        self.__dict__["_state"] = state

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)

    # A dict, so that mapping-like objects (mmengine's ConfigDict in `meta`) keep their items.
    cls = type(name, (dict,), {"__init__": init, "__setstate__": setstate, "append": append, "extend": extend,
                               "__repr__": lambda self: f"<inert {fullname} {dict.__repr__(self)}>"})
    cls.__module__, cls.__qualname__ = module, name
    return cls


def load_checkpoint(path):
    """torch.load with weights_only=True; globals outside torch's allow-list become inert stand-ins."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - retried below, or reported as one line
        error = first
    if not hasattr(torch.serialization, "safe_globals"):
        raise error
    stubs = {}
    if hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        try:
            for g in torch.serialization.get_unsafe_globals_in_checkpoint(path):
                stubs[g] = _inert_class(g)
        except Exception:  # noqa: BLE001 - legacy (non-zip) files: fall back to the error messages
            pass
    for _ in range(200):
        try:
            with torch.serialization.safe_globals(list(stubs.values())):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            m = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(e)) or \
                re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            if not m or m.group(1) in stubs:
                raise
            stubs[m.group(1)] = _inert_class(m.group(1))
    raise error


def output_problem(src, dst):
    """One line when dst cannot be the output: it is the input (any spelling, links included), a folder, or in a
    folder that does not exist; None when it can."""
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        return f"{dst}: is the input checkpoint; choose another output path"
    if os.path.realpath(dst) == os.path.realpath(src):
        return f"{dst}: is the input checkpoint; choose another output path"
    if os.path.isdir(dst):
        return f"{dst}: is a folder; give the output file's path (e.g. {os.path.join(dst, 'model.safetensors')})"
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        return f"{dst}: the folder {os.path.dirname(dst) or '.'} does not exist"
    if not os.access(parent, os.W_OK):
        return f"{dst}: the folder {os.path.dirname(dst) or '.'} is not writable"
    return None


def load_error(e):
    """torch's load errors as one line: the first line of the message, without its advice to retry with
    weights_only=False (never safe for a file of unknown origin; the weights-only loader ran nothing from it)."""
    text = str(e).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        m = re.search(r"(Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|[^\n]*not an allowed global[^\n]*)", text)
        reason = m.group(1) if m else "it is not a plain checkpoint of tensors"
        return f"refused by the weights-only loader ({reason}); it may hold code, and nothing from it was run"
    first = text.splitlines()[0] if text else ""
    if (isinstance(e, (pickle.UnpicklingError, EOFError, KeyError, ValueError)) or "invalid load key" in first
            or "could not find MARK" in first or "pickle data was truncated" in first):
        return f"not a PyTorch checkpoint (unreadable as torch.save's zip or pickle format: {type(e).__name__} {first})".rstrip()
    return first or type(e).__name__


def select_state_dict(ckpt, key):
    sd, meta = ckpt, {}
    if isinstance(ckpt, dict) and isinstance(ckpt.get("meta"), dict):
        meta = ckpt["meta"]
    for k in ([key] if key else ["model", "state_dict"]):
        if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
            sd = sd[k]
            break
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        return None, meta
    return sd, meta


# ------------------------------------------------------------------------------------------------------ our key set

BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
WB = r"(weight|bias)"
CONV_MODULE = rf"(conv\.{WB}|bn\.{BN}|gn\.{WB})"

BACKBONE_KEYS = [
    # ResNet / ACmix-ResNet (torchvision keys)
    r"conv1\.weight", rf"bn1\.{BN}",
    r"stem\.[036]\.weight", rf"stem\.[147]\.{BN}",                                  # ResNetV1c deep stem
    r"layer[1-4]\.\d+\.conv[13]\.weight", rf"layer[1-4]\.\d+\.bn[123]\.{BN}", r"layer[1-4]\.\d+\.conv2\.weight",
    rf"layer[1-4]\.\d+\.conv2\.(rate1|rate2|conv[123]\.{WB}|conv_p\.{WB}|fc\.weight|dep_conv\.weight)",
    r"layer[1-4]\.\d+\.downsample\.0\.weight", rf"layer[1-4]\.\d+\.downsample\.1\.{BN}", rf"fc\.{WB}",
    # Swin / ACmix-Swin (the authors' keys)
    rf"patch_embed\.proj\.{WB}", rf"patch_embed\.norm\.{WB}",
    rf"layers\.\d+\.blocks\.\d+\.norm[12]\.{WB}", rf"layers\.\d+\.blocks\.\d+\.attn\.(qkv|proj)\.{WB}",
    r"layers\.\d+\.blocks\.\d+\.attn\.relative_position_(bias_table|index)",
    rf"layers\.\d+\.blocks\.\d+\.attn\.(rate1|rate2|fc\.{WB}|dep_conv\.weight)",
    r"layers\.\d+\.blocks\.\d+\.attn_mask", rf"layers\.\d+\.blocks\.\d+\.mlp\.fc[12]\.{WB}",
    r"layers\.\d+\.downsample\.reduction\.weight", rf"layers\.\d+\.downsample\.norm\.{WB}",
    rf"norm\.{WB}", rf"head\.{WB}", rf"norm\d+\.{WB}",
]
PART_KEYS = {
    "backbone.": BACKBONE_KEYS,
    "neck.": [rf"(lateral_convs|fpn_convs)\.\d+\.conv\.{WB}"],                                      # FPN
    "bbox_head.": [rf"(cls_convs|reg_convs)\.\d+\.(conv\.{WB}|gn\.{WB})", rf"retina_(cls|reg)\.{WB}"],  # RetinaHead
    "rpn_head.": [rf"rpn_(conv|cls|reg)\.{WB}"],                                                      # RPNHead
    # Shared2FCBBoxHead and FCNMaskHead; `.N` after the head is a Cascade R-CNN stage.
    "roi_head.": [rf"bbox_head\.(\d+\.)?(shared_fcs\.\d+|fc_cls|fc_reg)\.{WB}",
                  rf"mask_head\.(\d+\.)?(convs\.\d+\.conv|upsample|conv_logits)\.{WB}"],
    "decode_head.": [
        rf"psp_modules\.\d+\.1\.{CONV_MODULE}", rf"(bottleneck|fpn_bottleneck|conv_cat)\.{CONV_MODULE}",  # UPerHead
        rf"(lateral_convs|fpn_convs|convs)\.\d+\.{CONV_MODULE}",                                    # UPer / FCNHead
        rf"scale_heads\.\d+\.\d+\.{CONV_MODULE}", rf"conv_seg\.{WB}",                               # FPNHead
    ],
}
PART_KEYS["auxiliary_head."] = PART_KEYS["decode_head."]
PATTERNS = {p: re.compile("^(?:" + "|".join(ks) + ")$") for p, ks in PART_KEYS.items()}
BARE = re.compile("^(?:" + "|".join(BACKBONE_KEYS) + ")$")

HINTS = [
    (r"(^|\.)stem\.", "a deep stem other than ResNetV1c's (three 3x3 convs with BN: keys stem.0..stem.7)"),
    (r"downsample\.2\.", "ResNetV1d's avg_down shortcut (downsample.0 is an AvgPool): not implemented"),
    (r"absolute_pos_embed", "Swin's absolute position embedding (ape=True) is not implemented"),
    (r"^(roi_head\.(bbox_head|mask_head)\.|mask_head\.|semantic_head\.)",
     "a RoI head other than Shared2FCBBoxHead / FCNMaskHead (e.g. convs in the box head, norms, a semantic head)"),
    (r"\.(conv2_offset|dcn|context_block|gen_attention)", "DCN / plugin layers are not implemented"),
    (r"^neck\..*\.(bn|gn)\.", "ACmixKit's FPN has no norm layers"),
    (r"^data_preprocessor\.", "data preprocessor buffers are not weights (mean/std come from the config)"),
]


def hint(key):
    for pattern, text in HINTS:
        if re.search(pattern, key):
            return text
    return None


# ------------------------------------------------------------------------------------------------------ key mapping

UNFOLD_ORDER = [0, 2, 1, 3]   # mmcv nn.Unfold's 2x2 order as the authors' x0..x3 index (an involution)


def unfold_to_concat_reduction(w):
    """mmdet/mmseg PatchMerging.reduction.weight (out, 4C) in nn.Unfold channel order (c*4 + j) → the authors'
    concat order (g*C + c) with x0=(0,0), x1=(1,0), x2=(0,1), x3=(1,1). Inverse of correct_unfold_reduction_order."""
    out_ch, in_ch = w.shape
    return w.reshape(out_ch, in_ch // 4, 4)[:, :, UNFOLD_ORDER].transpose(1, 2).reshape(out_ch, in_ch).contiguous()


def unfold_to_concat_norm(v):
    """The same permutation for PatchMerging.norm.{weight,bias} (4C). Inverse of correct_unfold_norm_order."""
    return v.reshape(v.shape[0] // 4, 4)[:, UNFOLD_ORDER].transpose(0, 1).reshape(v.shape[0]).contiguous()


MMCV_SWIN_RULES = [   # (regex on the backbone-relative key, replacement), applied in order
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.(\d+)\.", r"layers.\1."),
    (r"\.attn\.w_msa\.", ".attn."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]


def split_part(key):
    for p in PART_KEYS:
        if key.startswith(p):
            return p, key[len(p):]
    return "", key


def map_backbone_key(rel, value, mmcv_swin):
    """Backbone-relative key and tensor → ours. `mmcv_swin`: the checkpoint uses mmdet's/mmseg's Swin layout."""
    if not mmcv_swin:
        return rel, value
    new = rel
    for pattern, repl in MMCV_SWIN_RULES:
        new = re.sub(pattern, repl, new)
    if re.fullmatch(r"layers\.\d+\.downsample\.reduction\.weight", new):
        value = unfold_to_concat_reduction(value)
    elif re.fullmatch(r"layers\.\d+\.downsample\.norm\.(weight|bias)", new):
        value = unfold_to_concat_norm(value)
    return new, value


def detect_format(sd, meta):
    keys = list(sd)
    has_parts = any(k.split(".")[0] in ("backbone", "neck", "bbox_head", "decode_head", "auxiliary_head", "roi_head",
                                        "rpn_head") for k in keys)
    backbone_keys = [split_part(k)[1] for k in keys if k.startswith("backbone.") or not has_parts]
    mmcv_swin = any(k.startswith("stages.") or k.startswith("patch_embed.projection.") for k in backbone_keys)
    swin = mmcv_swin or any(k.startswith("layers.") or k.startswith("patch_embed.") for k in backbone_keys)
    family = "mmdet" if any(k.startswith(("bbox_head.", "roi_head.", "rpn_head.")) for k in keys) else \
        "mmseg" if any(k.startswith("decode_head.") for k in keys) else None
    version = None
    for name in ("mmdet_version", "mmseg_version"):
        if isinstance(meta.get(name), str):
            family, version = name.split("_")[0], meta[name]
    if family and not version:
        version = ("3.x" if family == "mmdet" else "1.x") if "mmengine_version" in meta or "dataset_meta" in meta else \
            ("2.x" if family == "mmdet" else "0.x") if meta else None
    if family:
        desc = f"{family} {version}" if version else family
    elif has_parts:
        desc = "detector / segmentor parts (mmdet / mmseg keys)" + (" 3.x / 1.x (mmengine)" if "mmengine_version" in meta else "")
    else:
        desc = "classifier / backbone"
    if swin:
        desc += ", Swin layout: " + ("mmdet/mmseg (mapped to the authors')" if mmcv_swin else "authors'")
    return desc, mmcv_swin


def cast(v, float_dtype=torch.float32):
    return v.detach().contiguous().to(float_dtype if v.is_floating_point() else torch.int64)


def convert(sd, float_dtype=torch.float32):
    """Returns (out, unknown, renamed): out maps our keys to tensors; unknown lists source keys ACmixKit has no
    place for; renamed counts keys whose name or layout changed."""
    sd = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in sd.items())
    _, mmcv_swin = detect_format(sd, {})
    has_parts = any(split_part(k)[0] for k in sd)
    out, unknown, renamed = OrderedDict(), [], 0
    for k, v in sd.items():
        part, rel = split_part(k)
        if part in ("", "backbone."):
            if part == "" and has_parts:
                unknown.append(k)
                continue
            rel2, v2 = map_backbone_key(rel, v, mmcv_swin)
            ok = (PATTERNS["backbone."] if part else BARE).match(rel2)
            new = part + rel2
        else:
            ok, new, v2 = PATTERNS[part].match(rel), k, v
        if not ok:
            unknown.append(k)
            continue
        if new in out:
            sys.exit(f"two source keys map to {new}")
        renamed += new != k or v2 is not v
        out[new] = cast(v2, float_dtype)
    return out, unknown, renamed


# ------------------------------------------------------------------------------------------------- completeness


def missing_keys(keys):
    """Keys an incomplete module would need: every module present must have all its tensors, and indexed lists
    (blocks, stages, convs) must run 0..n-1."""
    keys = set(keys)
    missing = set()

    def need(prefix, names):
        for n in names:
            if prefix + n not in keys:
                missing.add(prefix + n)

    bn = ["weight", "bias", "running_mean", "running_var"]
    for k in keys:
        m = re.match(r"^(.*?)(bn\d?|downsample\.1)\.(weight|bias|running_mean|running_var)$", k)
        if m:
            need(m.group(1) + m.group(2) + ".", bn)
        m = re.match(r"^(.*layers\.\d+\.blocks\.\d+\.)", k)
        if m:
            b = m.group(1)
            need(b, ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                     "attn.relative_position_bias_table", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                     "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"])
        m = re.match(r"^(.*layers\.\d+\.downsample\.)", k)
        if m:
            need(m.group(1), ["reduction.weight", "norm.weight", "norm.bias"])
        m = re.match(r"^(.*layer[1-4]\.\d+\.)", k)
        if m:
            need(m.group(1), ["conv1.weight", "bn1.weight", "bn2.weight", "conv3.weight", "bn3.weight"])
            if not any(x.startswith(m.group(1) + "conv2.") for x in keys):
                missing.add(m.group(1) + "conv2.weight")
        m = re.match(r"^(.*?)(norm\d+)\.(weight|bias)$", k)
        if m:
            need(m.group(1) + m.group(2) + ".", ["weight", "bias"])
    # indexed runs: a.N.b with N = 0..max
    groups = {}
    for k in keys:
        parts = k.split(".")
        for i, p in enumerate(parts):
            if p.isdigit() and i > 0:
                groups.setdefault(".".join(parts[:i]), set()).add(int(p))
    for head, idx in groups.items():
        if head.endswith(("psp_modules", "scale_heads", "layers", "blocks", "lateral_convs", "fpn_convs", "convs",
                          "cls_convs", "reg_convs", "stages")) or re.search(r"layer[1-4]$", head):
            for i in range(max(idx) + 1):
                if i not in idx:
                    missing.add(f"{head}.{i}.*")
    # Swin dense output norms: one per stage when any is present.
    for prefix in {re.match(r"^(.*?)layers\.\d+\.", k).group(1) for k in keys if re.match(r"^(.*?)layers\.\d+\.blocks", k)}:
        stages = {int(re.match(r"^" + re.escape(prefix) + r"layers\.(\d+)\.", k).group(1))
                  for k in keys if re.match(r"^" + re.escape(prefix) + r"layers\.\d+\.", k)}
        if any(re.match(r"^" + re.escape(prefix) + r"norm\d+\.", k) for k in keys):
            for i in range(max(stages) + 1):
                need(f"{prefix}norm{i}.", ["weight", "bias"])
    return sorted(missing)


def listing(title, keys, limit=40):
    lines = [f"{title} ({len(keys)}):"]
    for k in keys[:limit]:
        h = hint(k)
        lines.append(f"  {k}" + (f"    [{h}]" if h else ""))
    if len(keys) > limit:
        lines.append(f"  ... and {len(keys) - limit} more")
    return "\n".join(lines)


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """The safetensors format, written here so that the bytes are reproducible (the library orders the metadata by
    hash): header keys sorted; data without holes, wider dtypes first so every tensor is aligned to its element size;
    atomically (temporary file, then rename)."""
    header, offset, blobs = {}, 0, []
    order = sorted(range(len(tensors)), key=lambda i: -list(tensors.values())[i].element_size())
    items = list(tensors.items())
    for name, t in (items[i] for i in order):
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def metadata(src, fmt, meta):
    md = {"source": src, "format": fmt, "converted_by": "scripts/convert_pth.py"}
    ds = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    for ours, names in (("classes", ("classes", "CLASSES")), ("palette", ("palette", "PALETTE"))):
        for n in names:
            v = ds.get(n, meta.get(n))
            if isinstance(v, (list, tuple)):
                try:
                    md[ours] = json.dumps([list(x) if isinstance(x, (list, tuple)) else x for x in v])
                except TypeError:
                    pass
                break
    for n in ("mmdet_version", "mmseg_version", "mmengine_version"):
        if isinstance(meta.get(n), str):
            md[n] = meta[n]
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--key", default=None, help="sub-dictionary holding the weights (auto: 'model', 'state_dict')")
    ap.add_argument("--allow-unknown", action="store_true", help="drop (and list) keys ACmixKit has no place for")
    ap.add_argument("--keep-unknown", action="store_true", help="write unknown keys under their original names")
    ap.add_argument("--strict", action="store_true", help="also fail when modules are incomplete (missing keys)")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                    help="storage type of float tensors (default float32)")
    ap.add_argument("--list", action="store_true", help="print every source key -> our key and exit")
    a = ap.parse_args(argv)
    problem = output_problem(a.src, a.dst)
    if problem:
        sys.exit(problem)
    try:
        with warnings.catch_warnings():   # torch's warnings about the file would add lines to the one-line error
            warnings.simplefilter("ignore")
            ckpt = load_checkpoint(a.src)
    except Exception as e:  # noqa: BLE001 - one clear line for any unreadable file
        sys.exit(f"{a.src}: cannot load checkpoint: {load_error(e)}")
    sd, meta = select_state_dict(ckpt, a.key)
    if sd is None:
        sys.exit(f"{a.src}: no state dict of tensors found (try --key)")
    fmt, _ = detect_format(OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in sd.items()), meta)
    out, unknown, renamed = convert(sd, getattr(torch, a.dtype))
    if a.list:
        src_keys = [k[7:] if k.startswith("module.") else k for k in sd]
        ours = iter(out)
        for k in src_keys:
            print(f"{k} -> {'UNKNOWN' if k in unknown else next(ours)}")
        return 0
    missing = missing_keys(out)
    status = 0
    if unknown:
        if a.keep_unknown:
            print(listing("unknown keys, written under their original names", unknown), file=sys.stderr)
            for k in unknown:
                v = sd.get(k, sd.get("module." + k))
                out[k] = cast(v, getattr(torch, a.dtype))
        elif a.allow_unknown:
            print(listing("unknown keys, dropped (--allow-unknown)", unknown), file=sys.stderr)
        else:
            print(listing("unknown keys (not weights of an ACmixKit model)", unknown), file=sys.stderr)
            print(f"{a.src}: {len(unknown)} unknown keys; nothing written (--allow-unknown drops them, "
                  "--keep-unknown keeps them)", file=sys.stderr)
            return 1
    if missing:
        print(listing("missing keys (incomplete modules)", missing), file=sys.stderr)
        if a.strict:
            print(f"{a.src}: {len(missing)} missing keys; nothing written (--strict)", file=sys.stderr)
            return 1
    if not out:
        print(f"{a.src}: no tensor to write", file=sys.stderr)
        return 1
    try:
        write_safetensors(a.dst, out, metadata(a.src, fmt, meta))
    except OSError as e:
        sys.exit(f"{a.dst}: cannot write ({e.strerror or e})")
    print(f"wrote {len(out)} tensors to {a.dst} ({fmt}; {renamed} renamed or permuted)")
    return status


if __name__ == "__main__":
    sys.exit(main())
