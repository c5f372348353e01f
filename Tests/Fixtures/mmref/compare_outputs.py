#!/usr/bin/env python3
"""Runs the toolkit's det-infer and seg-infer (already built; nothing is rebuilt) on the fixture images and compares
their outputs with mmdetection's / mmsegmentation's in this folder. Needs numpy and Pillow only.

usage (from the repository root):
  python3 Tests/Fixtures/mmref/compare_outputs.py [--bin .build/release] [--work /tmp/mmref-compare]
Prints one JSON line per image and mode; exits 1 on a difference beyond the tolerances below.

det: same number of detections, same labels in the same order, boxes within 1e-2 px, scores within 1e-4.
seg: label maps equal except at pixels marked in seg_unsure*/ (top-2 probabilities within 1e-3).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def compare_det(binary, work):
    ref = json.load(open(os.path.join(HERE, "retinanet_r50w8_detections.json")))
    out = os.path.join(work, "det")
    shutil.rmtree(out, ignore_errors=True)
    run([binary, "--config", os.path.join(HERE, ref["config"]), "--checkpoint", os.path.join(HERE, ref["weights"]),
         "--out-dir", out, "--score-thr", "0"] + [os.path.join(HERE, im["file_name"]) for im in ref["images"]])
    ours = json.load(open(os.path.join(out, "predictions.json")))
    ok = True
    for r, o in zip(ref["images"], ours):
        rd, od = r["detections"], o["detections"]
        row = {"image": r["file_name"], "mmdet": len(rd), "ours": len(od)}
        if len(rd) == len(od):
            boxes = [[b["bbox"][0], b["bbox"][1], b["bbox"][0] + b["bbox"][2], b["bbox"][1] + b["bbox"][3]] for b in od]
            row["max_box_diff"] = max((abs(p - q) for a, b in zip(rd, boxes) for p, q in zip(a["bbox"], b)), default=0)
            row["max_score_diff"] = max((abs(a["score"] - b["score"]) for a, b in zip(rd, od)), default=0)
            # det-infer writes category ids; with the shapes dataset label k is category k + 1
            row["label_mismatches"] = sum(a["label"] != b["category_id"] - 1 for a, b in zip(rd, od))
            row["ok"] = row["max_box_diff"] <= 1e-2 and row["max_score_diff"] <= 1e-4 and row["label_mismatches"] == 0
        else:
            row["ok"] = False
        ok &= row["ok"]
        print(json.dumps(row))
    return ok


def compare_seg(binary, work):
    ref = json.load(open(os.path.join(HERE, "upernet_r50w8_predictions.json")))
    ok = True
    for mode, extra, key, unsure in (("whole", [], "pred", "unsure"), ("ms+flip", ["--aug-test"], "pred_tta", "unsure_tta")):
        out = os.path.join(work, "seg_" + key)
        shutil.rmtree(out, ignore_errors=True)
        run([binary, "--config", os.path.join(HERE, ref["config"]), "--checkpoint", os.path.join(HERE, ref["weights"]),
             "--out-dir", out, *extra] + [os.path.join(HERE, im["file_name"]) for im in ref["images"]])
        for im in ref["images"]:
            stem = os.path.splitext(os.path.basename(im["file_name"]))[0]
            r = np.array(Image.open(os.path.join(HERE, im[key])))
            u = np.array(Image.open(os.path.join(HERE, im[unsure]))) == 1
            o = np.array(Image.open(os.path.join(out, "pred", stem + ".png")))   # palette PNG: indices
            mism = r != o
            row = {"image": im["file_name"], "mode": mode, "mismatched_pixels": int(mism.sum()),
                   "mismatched_outside_unsure": int((mism & ~u).sum()), "ok": bool(not (mism & ~u).any())}
            ok &= row["ok"]
            print(json.dumps(row))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--work", default="/tmp/mmref-compare")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ok = compare_det(os.path.join(a.bin, "det-infer"), a.work)
    ok &= compare_seg(os.path.join(a.bin, "seg-infer"), a.work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
