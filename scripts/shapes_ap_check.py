#!/usr/bin/env python3
"""MEASUREMENT ONLY — not part of the toolkit (which has no Python at run time).

Scores a det-train results file against the shapes ground truth with pycocotools, to report bbox AP/AP50 until the
Swift COCOeval is wired into det-train's DetectionEvaluator hook.

    python3 scripts/shapes_ap_check.py data/shapes/annotations/instances_val.json work_dirs/<name>/results_val.json
"""
import sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
e = COCOeval(gt, dt, "bbox")
e.evaluate(); e.accumulate(); e.summarize()
print("bbox_mAP %.4f bbox_mAP_50 %.4f bbox_mAP_75 %.4f" % (e.stats[0], e.stats[1], e.stats[2]))
