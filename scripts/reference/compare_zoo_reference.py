"""Compares our zoo configs' test-time behaviour with mmdet/mmseg's (Tests/Fixtures/zoo_reference/zoo_reference.json,
made by scripts/reference/dump_zoo_reference.py). Standard library only; run from anywhere:

    python3 scripts/reference/compare_zoo_reference.py            # prints every difference; exit status 1 if any

Our configs are merged as Sources/Config/Config.swift does (`_base_` relative to the file, objects merged key by key,
everything else replaced, `"_delete_": true` replaces the base object). Values our configs cannot set are taken from
what the code does (each line says where), so a difference there needs a code change, not a config change.
"""
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FIXTURE = os.path.join(ROOT, 'Tests', 'Fixtures', 'zoo_reference', 'zoo_reference.json')

NORMALIZE = 'fixed in code: Sources/Data/Transforms/Normalize.swift (Normalize.imageNetMean/imageNetStd)'
RGB = 'fixed in code: images are decoded RGB and normalised in RGB order'


def merge(base, child):
    if not isinstance(base, dict) or not isinstance(child, dict):
        return child
    if child.get('_delete_') is True:
        return {k: v for k, v in child.items() if k != '_delete_'}
    out = dict(base)
    for k, v in child.items():
        if k != '_delete_':
            out[k] = merge(out[k], v) if k in out else v
    return out


def load(path):
    with open(path) as f:
        own = json.load(f)
    merged = {}
    bases = own.pop('_base_', [])
    for rel in [bases] if isinstance(bases, str) else bases:
        merged = merge(merged, load(os.path.normpath(os.path.join(os.path.dirname(path), rel))))
    return merge(merged, own)


def get(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def leaves(x, prefix=''):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f'{prefix}.{k}' if prefix else k)
    else:
        yield prefix, x


def ours(cfg, task):
    """[(reference field, our key path or where the code fixes it, our value)]."""
    def key(path, default, what=None):
        v = get(cfg, path)
        return (path if v is not None else f'{path} (absent; code default{": " + what if what else ""})',
                v if v is not None else default)

    rows = []
    if task == 'det':
        rows += [('test_pipeline.resize.scale', *key('data.img_scale', [1333, 800], 'DetectionDatasets.pipelines')),
                 ('test_pipeline.resize.keep_ratio', *key('data.keep_ratio', True)),
                 ('test_pipeline.flip', 'fixed in code: DetectionDatasets.pipelines (test flipRatio 0)', False),
                 ('data_preprocessor.pad_size_divisor', *key('data.size_divisor', 32)),
                 ('data_preprocessor.pad_value', 'fixed in code: Pad.image value 0 after Normalize', 0)]
    else:
        rows += [('test_pipeline.resize.scale', *key('data.img_scale', [2048, 512], 'SegmentationDatasets.pipelines')),
                 ('test_pipeline.resize.keep_ratio', 'fixed in code: SegmentationPipeline (always keep-ratio)', True),
                 ('test_pipeline.flip', 'fixed in code: SegmentationDatasets.pipelines (test flipProb 0)', False),
                 ('test_pipeline.reduce_zero_label', *key('data.reduce_zero_label', False)),
                 ('data_preprocessor.test_pad', 'fixed in code: SegmentationPipeline test mode (no padding)', None),
                 ('data_preprocessor.size', *key('data.crop_size', [512, 512], 'training Pad to crop_size')),
                 ('data_preprocessor.size_divisor', 'fixed in code: none', None),
                 ('data_preprocessor.pad_val', 'fixed in code: Pad.image value 0 (training)', 0),
                 ('data_preprocessor.seg_pad_val', 'fixed in code: Pad.labels 255 (training)', 255)]
        for head in ('decode_head', 'auxiliary_head'):
            if get(cfg, f'model.{head}') is not None:
                rows.append((f'align_corners.{head}', 'fixed in code: bilinear resizes use align_corners=False', False))
    rows += [('data_preprocessor.mean', NORMALIZE, [123.675, 116.28, 103.53]),
             ('data_preprocessor.std', NORMALIZE, [58.395, 57.12, 57.375]),
             ('data_preprocessor.bgr_to_rgb', RGB, True)]
    return rows


def close(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= 1e-9 * max(1, abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def main():
    with open(FIXTURE) as f:
        ref = json.load(f)
    total = 0
    for rel, theirs in sorted(ref['configs'].items()):
        cfg = load(os.path.join(ROOT, rel))
        flat = dict(leaves({k: theirs[k] for k in ('test_pipeline', 'data_preprocessor', 'align_corners') if k in theirs}))
        diffs, notes = [], []
        for field, where, value in ours(cfg, theirs['task']):
            if not close(value, flat.get(field)):
                diffs.append((field, where, value, flat.get(field)))
        # test_cfg: every leaf on either side, at model.test_cfg.<same path>
        ref_tc = dict(leaves(theirs['test_cfg'] or {}))
        our_tc = dict(leaves(get(cfg, 'model.test_cfg') or {}))
        if theirs['task'] == 'seg' and 'mode' not in our_tc:
            our_tc['mode'] = 'whole'   # EncoderDecoder schema default
        for leaf in sorted(set(ref_tc) | set(our_tc)):
            a, b = our_tc.get(leaf, '<absent>'), ref_tc.get(leaf, '<absent>')
            if not close(a, b):
                diffs.append((f'test_cfg.{leaf}', f'model.test_cfg.{leaf}', a, b))
        for head, n in sorted(theirs['num_classes'].items()):
            a = get(cfg, f'model.{head}.num_classes')
            if a != n:
                diffs.append((f'num_classes.{head}', f'model.{head}.num_classes', a, n))
        n_classes = ref['datasets'][theirs['dataset']]['num_classes']
        if theirs['task'] == 'det':
            notes.append(f'class names: not in our config; read at run time from data.coco.val_ann '
                         f'({get(cfg, "data.coco.val_ann")}); {theirs["dataset"]} has {n_classes}')
        else:
            notes.append(f'class names: none (SegmentationDatasets.ade20k gives classNames nil); {theirs["dataset"]} '
                         f'has {n_classes} named classes')
        print(f'{rel}  ->  {theirs["counterpart"]}')
        for field, where, a, b in diffs:
            print(f'  DIFF {field}: ours {json.dumps(a)} at {where}; theirs {json.dumps(b)}')
        for n in notes:
            print(f'  note {n}')
        if not diffs:
            print('  (no differences)')
        total += len(diffs)
    print(f'{total} differences')
    return 1 if total else 0


if __name__ == '__main__':
    sys.exit(main())
