"""Test-time reference for the zoo configs: what mmdetection 3.3 / mmsegmentation 1.2 do at test time.

Run from the repository root (needs ../shared/mmref/setup.sh once, which makes ~/.mmref):

    PYTHONPATH=/work/shared/mmref ~/.mmref/bin/python scripts/reference/dump_zoo_reference.py

It loads, with mmengine's Config, the counterpart of every zoo config under configs/ (all of configs/**.json but
_base_/ and *_shapes.json) from the configs shipped inside the installed packages (mmdet/.mim/configs,
mmseg/.mim/configs) and writes Tests/Fixtures/zoo_reference/zoo_reference.json (sorted keys, deterministic):

- "configs": our config path (repository-relative) -> {
    "counterpart": "mmdet:<path under configs/>" or "mmseg:...", "note" (only where the match is not one to one),
    "task": "det" | "seg", "dataset": the test dataset's type (its class names are under "datasets"),
    "test_pipeline": {"resize": {"scale", "keep_ratio"}, "flip" (any RandomFlip with prob > 0 in the plain test
                      pipeline; TTA is not included), seg only: "reduce_zero_label"},
    "data_preprocessor": mean, std, bgr_to_rgb (true: normalised in RGB order) and padding: det "pad_size_divisor",
                         "pad_value"; seg "pad_val", "seg_pad_val", "size" / "size_divisor" (training padding) and
                         "test_pad" (the preprocessor's test_cfg: null means test inputs are not padded),
    "test_cfg": model.test_cfg as mmdet/mmseg have it,
    "num_classes": {"<head path>": n} for every head with num_classes (e.g. "roi_head.mask_head"),
    seg only: "align_corners": {"decode_head": bool, "auxiliary_head": bool}}
- "datasets": dataset type -> {"classes": [...], "num_classes": n} (METAINFO, or the config's metainfo override)
- "versions": mmdet, mmseg, mmengine

For an ACmix config the counterpart is the same architecture's mmdet/mmseg config (backbone swapped): only the
test-time behaviour above is meant to match. scripts/reference/compare_zoo_reference.py compares our merged configs
against this file.
"""
import glob
import inspect
import json
import os
import sys

import mmcv_tv_patch  # noqa: F401  (before anything imports mmcv.ops)
import mmdet
import mmengine
import mmseg
from mmengine.config import Config, ConfigDict

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
OUT = os.path.join(ROOT, 'Tests', 'Fixtures', 'zoo_reference', 'zoo_reference.json')
PACKAGES = {'mmdet': os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs'),
            'mmseg': os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs')}

BACKBONE_NOTE = 'ACmix backbone in place of the counterpart\'s; test-time behaviour only'
SEM_FPN_NOTE = ('mmseg 1.2 ships Semantic FPN on ADE20K only with the 160k schedule (fpn_r50_4xb4-160k); '
                'the test-time settings do not depend on the schedule')
CASCADE_SWIN_NOTE = ('mmdet 3.3 ships no Swin Cascade Mask R-CNN config: the counterpart is its Cascade Mask R-CNN R50 '
                     '(whose heads and test_cfg ours keep) with the Swin backbone; its Swin 3x configs test at the same '
                     '1333x800 resize')

# our config -> (package, counterpart config under the package's configs/, note or None)
MAPPING = {
    'configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.json': ('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', None),
    'configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.json':
        ('mmdet', 'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', None),
    'configs/cascade_rcnn/cascade_mask_rcnn_swin_tiny_fpn_3x_coco.json':
        ('mmdet', 'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', CASCADE_SWIN_NOTE),
    'configs/cascade_rcnn/cascade_mask_rcnn_acmix_swin_tiny_fpn_3x_coco.json':
        ('mmdet', 'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', BACKBONE_NOTE + '; ' + CASCADE_SWIN_NOTE),
    'configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.json': ('mmdet', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', None),
    'configs/mask_rcnn/mask_rcnn_acmix_resnet50_fpn_1x_coco.json':
        ('mmdet', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', BACKBONE_NOTE),
    'configs/mask_rcnn/mask_rcnn_swin_tiny_fpn_1x_coco.json': ('mmdet', 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', None),
    'configs/mask_rcnn/mask_rcnn_acmix_swin_tiny_fpn_1x_coco.json':
        ('mmdet', 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', BACKBONE_NOTE),
    'configs/retinanet/retinanet_resnet50_fpn_1x_coco.json': ('mmdet', 'retinanet/retinanet_r50_fpn_1x_coco.py', None),
    'configs/retinanet/retinanet_acmix_resnet50_fpn_1x_coco.json':
        ('mmdet', 'retinanet/retinanet_r50_fpn_1x_coco.py', BACKBONE_NOTE),
    'configs/retinanet/retinanet_swin_tiny_fpn_1x_coco.json': ('mmdet', 'swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py', None),
    'configs/retinanet/retinanet_acmix_swin_tiny_fpn_1x_coco.json':
        ('mmdet', 'swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py', BACKBONE_NOTE),
    'configs/sem_fpn/fpn_resnet50_512x512_80k_ade20k.json': ('mmseg', 'sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', SEM_FPN_NOTE),
    'configs/sem_fpn/fpn_acmix_resnet50_512x512_80k_ade20k.json':
        ('mmseg', 'sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', BACKBONE_NOTE + '; ' + SEM_FPN_NOTE),
    'configs/upernet/upernet_swin_tiny_512x512_160k_ade20k.json':
        ('mmseg', 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', None),
    'configs/upernet/upernet_acmix_swin_tiny_512x512_160k_ade20k.json':
        ('mmseg', 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', BACKBONE_NOTE),
}


def zoo_configs():
    """Every zoo config in configs/ (repository-relative), sorted."""
    found = []
    for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.json'), recursive=True):
        rel = os.path.relpath(p, ROOT)
        if rel.startswith(os.path.join('configs', '_base_')) or rel.endswith('_shapes.json'):
            continue
        found.append(rel.replace(os.sep, '/'))
    return sorted(found)


def plain(x):
    """ConfigDict / tuple / numpy scalars -> plain JSON values."""
    if isinstance(x, (dict, ConfigDict)):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def transform(pipeline, kind):
    hits = [t for t in pipeline if t['type'] == kind]
    return hits[0] if hits else None


def heads_with_classes(model, prefix=''):
    """{'bbox_head': 80} / {'roi_head.bbox_head': 80, 'roi_head.mask_head': 80} / {'decode_head': 150, ...}."""
    out = {}
    for k, v in model.items():
        if k in ('backbone', 'neck', 'data_preprocessor', 'train_cfg', 'test_cfg'):
            continue
        if isinstance(v, (dict, ConfigDict)):
            if 'num_classes' in v:
                out[prefix + k] = v['num_classes']
            out.update(heads_with_classes(v, prefix + k + '.'))
    return out


def dataset_class(package, dataset_cfg):
    import mmdet.datasets  # noqa: F401  (registers the datasets)
    import mmseg.datasets  # noqa: F401
    from mmdet.registry import DATASETS as DET_DATASETS
    from mmseg.registry import DATASETS as SEG_DATASETS
    return (DET_DATASETS if package == 'mmdet' else SEG_DATASETS).get(dataset_cfg['type'])


def dataset_classes(package, dataset_cfg):
    if dataset_cfg.get('metainfo') and 'classes' in dataset_cfg.metainfo:
        return list(dataset_cfg.metainfo['classes'])
    return list(dataset_class(package, dataset_cfg).METAINFO['classes'])


def normalise(package, cfg):
    """The test-time values of one mmdet/mmseg config."""
    model = cfg.model
    ds = cfg.test_dataloader.dataset
    pipeline = ds.pipeline
    resize = transform(pipeline, 'Resize')
    flips = [t for t in pipeline if t['type'] == 'RandomFlip']
    dp = model.data_preprocessor
    out = {
        'task': 'det' if package == 'mmdet' else 'seg',
        'dataset': ds['type'],
        'test_pipeline': {'resize': {'scale': plain(resize['scale']), 'keep_ratio': bool(resize.get('keep_ratio', False))},
                          'flip': any(t.get('prob', 0) > 0 for t in flips)},
        'data_preprocessor': {'mean': plain(dp['mean']), 'std': plain(dp['std']), 'bgr_to_rgb': bool(dp.get('bgr_to_rgb', False))},
        'test_cfg': plain(model.get('test_cfg')),
        'num_classes': heads_with_classes(model),
    }
    if package == 'mmdet':
        out['data_preprocessor'].update(pad_size_divisor=dp.get('pad_size_divisor', 1), pad_value=dp.get('pad_value', 0))
    else:
        ann = transform(pipeline, 'LoadAnnotations')
        rzl = ann.get('reduce_zero_label') if ann else None
        if rzl is None:   # LoadAnnotations(reduce_zero_label=None) takes the dataset's
            init = inspect.signature(dataset_class(package, ds).__init__)
            rzl = ds.get('reduce_zero_label', init.parameters['reduce_zero_label'].default)
        out['test_pipeline']['reduce_zero_label'] = bool(rzl)
        out['data_preprocessor'].update(pad_val=dp.get('pad_val', 0), seg_pad_val=dp.get('seg_pad_val', 255),
                                        size=plain(dp.get('size')), size_divisor=dp.get('size_divisor'),
                                        test_pad=plain(dp.get('test_cfg')))
        out['align_corners'] = {k: bool(model[k].get('align_corners', False))
                                for k in ('decode_head', 'auxiliary_head') if model.get(k)}
    return out, dataset_classes(package, ds)


def dumps(x, depth=0, expand=2):
    """Sorted-key JSON: objects expanded one key a line down to `expand` levels, everything deeper on one line."""
    if not isinstance(x, dict) or depth >= expand or not x:
        return json.dumps(x, sort_keys=True, ensure_ascii=True)
    pad = ' ' * (depth + 1)
    items = [f'{pad}{json.dumps(k)}: {dumps(x[k], depth + 1, expand)}' for k in sorted(x)]
    return '{\n' + ',\n'.join(items) + '\n' + ' ' * depth + '}'


def main():
    missing = [p for p in PACKAGES.values() if not os.path.isdir(p)]
    if missing:
        sys.exit(f'missing config folders: {missing}')

    ours = zoo_configs()
    unmapped = [p for p in ours if p not in MAPPING]
    stale = [p for p in MAPPING if p not in ours]
    if unmapped or stale:
        sys.exit(f'zoo configs without a counterpart: {unmapped}; mapped but absent: {stale}')

    configs, datasets = {}, {}
    for rel in ours:
        package, counterpart, note = MAPPING[rel]
        cfg = Config.fromfile(os.path.join(PACKAGES[package], counterpart))
        values, classes = normalise(package, cfg)
        values['counterpart'] = f'{package}:configs/{counterpart}'
        if note:
            values['note'] = note
        configs[rel] = values
        known = datasets.setdefault(values['dataset'], {'classes': classes, 'num_classes': len(classes)})
        assert known['classes'] == classes, f'{rel}: {values["dataset"]} classes differ between counterparts'

    doc = {'configs': configs, 'datasets': datasets,
           'versions': {'mmdet': mmdet.__version__, 'mmseg': mmseg.__version__, 'mmengine': mmengine.__version__},
           'generator': 'scripts/reference/dump_zoo_reference.py'}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        f.write(dumps(doc) + '\n')
    print(f'wrote {os.path.relpath(OUT, ROOT)}: {len(configs)} configs, datasets {sorted(datasets)}')


if __name__ == '__main__':
    main()
