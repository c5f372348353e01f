#!/usr/bin/env python
"""Reference fixture for the `confusion-matrix` tool, produced by mmdetection 3.3's own code.

Usage (from the repository root):

    PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python \
        Tests/Fixtures/confusion_matrix/make_confusion_fixture.py \
        /root/.mmref/lib/python3.11/site-packages/mmdet/.mim/tools/analysis_tools/confusion_matrix.py

The single argument is the path of mmdetection's `tools/analysis_tools/confusion_matrix.py` (v3.3.0). The pip
wheel ships it under `mmdet/.mim/tools/`; otherwise take it from git (`git show v3.3.0:tools/analysis_tools/
confusion_matrix.py`). That file is imported (not copied) and its `calculate_confusion_matrix` and
`plot_confusion_matrix` are run on:

  gt.json       synthetic COCO instances file (12 images, 4 categories with ids 7, 1, 9, 3 in that list order)
  results.json  COCO detection results (list of {image_id, category_id, bbox [x, y, w, h], score})

and writes expected.json next to this script.
"""
import importlib.util
import json
import os
import random
import sys

import mmcv_tv_patch  # noqa: F401  (stand-in mmcv._ext so that `from mmcv.ops import nms` imports)
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmdet.datasets import CocoDataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the last case keeps no detection at all: the background row sums to 0 -> NaN percentages, drawn as '-1%'
CASES = [(0.3, 0.5), (0.0, 0.5), (0.5, 0.75), (0.99, 0.5)]

# "categories" list order in gt.json: ids 7, 1, 9, 3 (neither sorted nor contiguous).
CATEGORIES = [
    {'id': 7, 'name': 'dog', 'supercategory': 'animal'},
    {'id': 1, 'name': 'person', 'supercategory': 'person'},
    {'id': 9, 'name': 'cat', 'supercategory': 'animal'},
    {'id': 3, 'name': 'car', 'supercategory': 'vehicle'},
]
DOG, PERSON, CAT, CAR = 7, 1, 9, 3


def f32(x):
    """A float whose value is exactly representable in float32 (as detectors' outputs are)."""
    return float(np.float32(x))


def build_gt_and_results():
    images, anns, dets = [], [], []

    def img(iid, w, h):
        images.append({'id': iid, 'file_name': f'{iid:06d}.jpg', 'width': w, 'height': h})

    def gt(iid, cat, box, iscrowd=0):
        x, y, w, h = box
        anns.append({'id': len(anns) + 1, 'image_id': iid, 'category_id': cat, 'bbox': list(box),
                     'area': w * h, 'iscrowd': iscrowd,
                     'segmentation': [[x, y, x + w, y, x + w, y + h, x, y + h]]})  # the box as a polygon

    def det(iid, cat, box, score):
        dets.append({'image_id': iid, 'category_id': cat, 'bbox': list(box), 'score': score})

    # 101: correct det, IoU exactly 0.5, det on an iscrowd gt, low-score wrong-class det
    img(101, 200, 150)
    gt(101, DOG, [20, 30, 60, 40])
    gt(101, PERSON, [100, 20, 40, 80])
    gt(101, PERSON, [150, 100, 40, 40], iscrowd=1)
    det(101, DOG, [20, 30, 60, 40], 0.9)              # IoU 1 -> TP
    det(101, PERSON, [100, 20, 40, 40], 0.8)          # IoU exactly 0.5 (1600/3200)
    det(101, PERSON, [150, 100, 40, 40], 0.6)         # matches the crowd gt (crowd gts are NOT ignored)
    det(101, DOG, [100, 20, 40, 80], 0.2)             # below 0.3, on the person gt
    # 5: no annotations, no detections
    img(5, 64, 64)
    # 42: no annotations, detections only (background FPs); score exactly 0.3
    img(42, 120, 90)
    det(42, CAR, [10, 10, 30, 20], 0.7)
    det(42, CAT, [50, 40, 20, 20], 0.3)               # exactly at score_thr 0.3 -> kept
    det(42, PERSON, [80, 10, 20, 60], 0.1)
    # 7: overlapping gts of different classes (gt-gt IoU 2025/2975 = 0.68)
    img(7, 160, 120)
    gt(7, CAT, [30, 30, 50, 50])
    gt(7, DOG, [35, 35, 50, 50])
    det(7, CAT, [30, 30, 50, 50], 0.95)               # IoU 1 with cat, 0.68 with dog -> 2 matches
    det(7, DOG, [35, 35, 50, 50], 0.5)                # exactly at score_thr 0.5
    # 13: several detections on one gt
    img(13, 100, 100)
    gt(13, CAR, [10, 10, 40, 40])
    det(13, CAR, [10, 10, 40, 40], 0.9)               # IoU 1
    det(13, CAR, [12, 12, 40, 40], 0.85)              # IoU 1444/1756 = 0.822
    det(13, CAR, [14, 14, 40, 40], 0.4)               # IoU 1296/1904 = 0.681
    det(13, PERSON, [10, 10, 40, 40], 0.6)            # wrong class on the car gt
    # 200: missed gts (FN) and a far-away detection
    img(200, 200, 150)
    gt(200, PERSON, [50, 50, 30, 60])
    gt(200, CAT, [120, 20, 40, 30])
    det(200, DOG, [0, 120, 25, 25], 0.45)
    # 8: gts dropped by CocoDataset.parse_data_info (w < 1; fully outside the image); a gt partly outside kept
    img(8, 64, 64)
    gt(8, DOG, [10, 10, 0.5, 20])                     # w < 1 -> dropped
    gt(8, CAR, [70, 70, 10, 10])                      # no overlap with the 64x64 image -> dropped
    gt(8, CAT, [50, 40, 30, 30])                      # partly outside: kept, NOT clipped
    det(8, DOG, [10, 10, 1, 20], 0.9)                 # gt dropped -> background FP
    det(8, CAR, [70, 70, 10, 10], 0.8)                # gt dropped -> background FP
    det(8, CAT, [50, 40, 30, 30], 0.7)                # TP (IoU 1 with the unclipped box)
    # 77: only a crowd gt, no detections -> FN for car
    img(77, 150, 100)
    gt(77, CAR, [0, 0, 150, 100], iscrowd=1)
    # 31: wrong class only
    img(31, 128, 128)
    gt(31, CAT, [20, 20, 60, 60])
    det(31, DOG, [20, 20, 60, 60], 0.88)
    # 64: IoU just below 0.5, and exactly 0.75 (quarter-pixel coordinates)
    img(64, 180, 120)
    gt(64, PERSON, [10.5, 20.25, 40, 20])
    gt(64, DOG, [100.25, 50.5, 40, 40])
    det(64, PERSON, [10.5, 20.25, 40, 9.75], 0.77)   # IoU 390/800 = 0.4875
    det(64, DOG, [100.25, 50.5, 40, 30], 0.66)        # IoU exactly 0.75 (1200/1600)
    # 90 and 3: random gts and jittered / random detections with arbitrary float coordinates and scores
    rng = random.Random(20240607)
    cat_ids = [DOG, PERSON, CAT, CAR]
    for iid, (W, H), ngt, nrand in [(90, (200, 150), 5, 4), (3, (96, 80), 3, 3)]:
        img(iid, W, H)
        boxes = []
        for _ in range(ngt):
            w = round(rng.uniform(8, W / 2), 2)
            h = round(rng.uniform(8, H / 2), 2)
            x = round(rng.uniform(0, W - w), 2)
            y = round(rng.uniform(0, H - h), 2)
            c = rng.choice(cat_ids)
            gt(iid, c, [x, y, w, h])
            boxes.append((c, x, y, w, h))
        for c, x, y, w, h in boxes:
            for _ in range(rng.randint(1, 3)):
                jx, jy = rng.uniform(-0.25, 0.25) * w, rng.uniform(-0.25, 0.25) * h
                sw, sh = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
                dc = c if rng.random() < 0.7 else rng.choice(cat_ids)
                det(iid, dc, [f32(round(x + jx, 4)), f32(round(y + jy, 4)), f32(round(w * sw, 4)),
                              f32(round(h * sh, 4))], f32(round(rng.uniform(0.05, 0.99), 4)))
        for _ in range(nrand):
            w, h = rng.uniform(5, W / 3), rng.uniform(5, H / 3)
            det(iid, rng.choice(cat_ids), [f32(round(rng.uniform(0, W - w), 4)),
                                           f32(round(rng.uniform(0, H - h), 4)), f32(round(w, 4)),
                                           f32(round(h, 4))], f32(round(rng.uniform(0.05, 0.99), 4)))
    # exact decimal scores (0.3, 0.5, ...) are written as such; readers compare them in float32 (see README)
    gt_json = {'info': {'description': 'confusion-matrix fixture'}, 'licenses': [], 'images': images,
               'annotations': anns, 'categories': CATEGORIES}
    return gt_json, dets


def load_tool(path):
    spec = importlib.util.spec_from_file_location('mmdet_confusion_matrix', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_dataset(classes):
    return CocoDataset(ann_file=os.path.join(HERE, 'gt.json'), data_root='', data_prefix=dict(img=''),
                       metainfo=dict(classes=tuple(classes)), test_mode=True, pipeline=[])


def to_mmdet_results(dataset, dets, dtype):
    """COCO results -> the per-image dicts of mmdet's test pkl (DumpDetResults), in dataset order."""
    cat2label = dataset.cat2label
    out = []
    for i in range(len(dataset)):
        img_id = dataset.get_data_info(i)['img_id']
        mine = [d for d in dets if d['image_id'] == img_id and d['category_id'] in cat2label]
        # x2 = x + w, y2 = y + h computed in float64, then stored in the tensor's dtype
        bboxes = [[d['bbox'][0], d['bbox'][1], d['bbox'][0] + d['bbox'][2], d['bbox'][1] + d['bbox'][3]]
                  for d in mine]
        out.append({'img_id': img_id, 'pred_instances': {
            'bboxes': torch.tensor(bboxes, dtype=dtype).reshape(-1, 4),
            'scores': torch.tensor([d['score'] for d in mine], dtype=dtype),
            'labels': torch.tensor([cat2label[d['category_id']] for d in mine], dtype=torch.int64)}})
    return out


def check_margins(dataset, results, cases):
    """Every det/gt IoU and every score is either exactly at a threshold (by construction) or well away
    from it, so float32 vs float64 evaluation orders cannot flip a decision."""
    from mmdet.evaluation import bbox_overlaps
    thr_iou = {t for _, t in cases}
    thr_score = {s for s, _ in cases}
    for i, r in enumerate(results):
        gts = dataset.get_data_info(i)['instances']
        b = r['pred_instances']['bboxes'].double().numpy()
        if len(gts) and len(b):
            g = np.array([x['bbox'] for x in gts], dtype=np.float64)
            iou32 = bbox_overlaps(b, g)  # mmdet's value (computed in float32)
            iou64 = iou32.astype(np.float64)
            # independent float64 computation
            lt = np.maximum(b[:, None, :2], g[None, :, :2])
            rb = np.minimum(b[:, None, 2:], g[None, :, 2:])
            inter = np.clip(rb - lt, 0, None).prod(-1)
            a1 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            a2 = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
            iou_d = inter / np.maximum(a1[:, None] + a2[None] - inter, 1e-6)
            assert np.abs(iou64 - iou_d).max() < 1e-5
            for t in thr_iou:
                near = np.abs(iou_d - t) < 1e-3
                assert np.all(iou_d[near] == t) and np.all(iou32[near] == np.float32(t)), (i, t, iou_d[near])
        for s in r['pred_instances']['scores'].double().numpy():
            for t in thr_score:
                assert abs(s - t) >= 1e-3 or np.float32(s) == np.float32(t), (s, t)


def plot_percent(tool, matrix, labels):
    """Run mmdet's plot_confusion_matrix and read back what it drew: the normalised image and the cell texts."""
    plt.close('all')
    tool.plot_confusion_matrix(matrix.copy(), labels, save_dir=None, show=False)
    ax = plt.gcf().axes[0]
    arr = np.asarray(ax.images[0].get_array(), dtype=np.float64)
    n = len(labels)
    texts = [[None] * n for _ in range(n)]
    for t in ax.texts:
        j, i = t.get_position()
        texts[int(i)][int(j)] = t.get_text()
    meta = {'dtype_of_normalised': str(ax.images[0].get_array().dtype), 'title': ax.get_title(),
            'xlabel': ax.get_xlabel(), 'ylabel': ax.get_ylabel(), 'cmap': ax.images[0].get_cmap().name,
            'xticklabels': [t.get_text() for t in ax.get_xticklabels()],
            'figsize_inches': [float(v) for v in plt.gcf().get_size_inches()], 'dpi': plt.gcf().dpi}
    plt.close('all')
    percent = [[None if np.isnan(v) else float(v) for v in row] for row in arr]
    return percent, texts, meta


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tool = load_tool(sys.argv[1])
    gt_json, dets = build_gt_and_results()
    with open(os.path.join(HERE, 'gt.json'), 'w') as f:
        json.dump(gt_json, f, indent=1)
    with open(os.path.join(HERE, 'results.json'), 'w') as f:
        json.dump(dets, f, indent=1)

    # Config-style metainfo: classes named in the file's "categories" order.
    classes = [c['name'] for c in CATEGORIES]
    dataset = build_dataset(classes)
    assert list(dataset.metainfo['classes']) == classes
    category_ids = list(dataset.cat_ids)  # label i <-> cat_ids[i] (file order, filtered by class names)
    res32 = to_mmdet_results(dataset, dets, torch.float32)
    res64 = to_mmdet_results(dataset, dets, torch.float64)
    check_margins(dataset, res32, CASES)
    labels = tuple(dataset.metainfo['classes']) + ('background',)

    out = {'generator': 'mmdetection 3.3.0 tools/analysis_tools/confusion_matrix.py '
                        '(calculate_confusion_matrix, plot_confusion_matrix); see make_confusion_fixture.py',
           'classes': classes, 'category_ids': category_ids, 'labels': list(labels),
           'image_ids_in_dataset_order': [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))],
           'cases': []}
    for score_thr, tp_iou_thr in CASES:
        m = tool.calculate_confusion_matrix(dataset, res32, score_thr, None, tp_iou_thr)
        m64 = tool.calculate_confusion_matrix(dataset, res64, score_thr, None, tp_iou_thr)
        assert np.array_equal(m, m64), 'float32 and float64 predictions disagree'
        percent, texts, meta = plot_percent(tool, m, labels)
        out['plot'] = meta
        out['cases'].append({'score_thr': score_thr, 'tp_iou_thr': tp_iou_thr, 'nms_iou_thr': None,
                             'matrix': m.astype(int).tolist(), 'percent': percent, 'percent_text': texts})

    # Gotcha: metainfo classes in another order than the file's categories. Labels still follow the file
    # order (cat_ids), while names (and num_classes) come from metainfo['classes'].
    alt_classes = sorted(classes)
    ds_alt = build_dataset(alt_classes)
    m_alt = tool.calculate_confusion_matrix(ds_alt, to_mmdet_results(ds_alt, dets, torch.float32), 0.3, None,
                                            0.5)
    out['class_order_variant'] = {
        'metainfo_classes': alt_classes, 'category_ids_by_label': list(ds_alt.cat_ids),
        'score_thr': 0.3, 'tp_iou_thr': 0.5, 'matrix': m_alt.astype(int).tolist(),
        'note': 'label i is cat_ids[i] (file order) but is drawn with the name metainfo_classes[i]'}

    with open(os.path.join(HERE, 'expected.json'), 'w') as f:
        json.dump(out, f, indent=1)
    for c in out['cases']:
        print(c['score_thr'], c['tp_iou_thr'])
        print(np.array(c['matrix']))


if __name__ == '__main__':
    main()
