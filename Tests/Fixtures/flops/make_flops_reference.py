#!/usr/bin/env python3
"""Reference FLOP and parameter counts for the `get-flops` tool.

Counts, for a 1x3x224x224 input in eval mode:
  * fvcore.nn.FlopCountAnalysis with its default handles (one multiply-add = one flop):
    total, by_module() for the top-level children, by_operator(), unsupported_ops();
  * parameter counts (total and per top-level child);
  * for torchvision's resnet50 also OpenMMLab's counters (mmcv.cnn.get_model_complexity_info, the
    hook-based counter of mmdet 2.x's get_flops.py, and mmengine.analysis.get_model_complexity_info,
    the one of mmdet 3.x's tools/analysis_tools/get_flops.py), run in a second interpreter.

Models: torchvision resnet50 (random init: counts do not depend on the weights), and the authors'
ACmix code (LeapLabTHU/ACmix): ACmix-ResNet-26/38/50 (ResNet/ResNet_ImageNet.py, layers
1,2,4,1 / 2,3,5,2 / 3,4,6,3 as in ResNet/main.py, k_att 7, head 4, k_conv 3), and Swin-T/S plain
(Swin-Transformer/models/swin_transformer.py, Microsoft's code as vendored by the authors) and with
ACmix (models/swin_transformer_acmix.py), img 224, window 7, the configs' embed 96 / heads 3,6,12,24.

Usage (defaults are this workspace's paths):
  ~/.acmix-peer/bin/python make_flops_reference.py \
      [--acmix-repo DIR]   # checkout or bare git dir of LeapLabTHU/ACmix (env ACMIX_REPO)
      [--mm-python PY]     # interpreter with mmcv + mmengine (env MM_PYTHON), '' to skip
      [--mm-pythonpath P]  # PYTHONPATH for it (env MM_PYTHONPATH)
      [--out flops_reference.json]
Needs torch, torchvision and fvcore (pip install fvcore). timm is not needed: if it is missing, a
stand-in for timm.models.layers (DropPath, to_2tuple, trunc_normal_) is installed; likewise
torchvision.models.utils.load_state_dict_from_url, which ResNet_ImageNet.py imports.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = [1, 3, 224, 224]


# --------------------------------------------------------------------------- authors' code loading
def _shims():
    import torch
    import torch.nn as nn
    try:
        import timm.models.layers  # noqa: F401
    except Exception:
        class DropPath(nn.Module):
            def __init__(self, drop_prob=0.):
                super().__init__()
                self.drop_prob = drop_prob

            def forward(self, x):
                if self.drop_prob == 0. or not self.training:
                    return x
                keep = 1 - self.drop_prob
                mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
                return x * mask / keep

        def to_2tuple(x):
            return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

        layers = types.ModuleType('timm.models.layers')
        layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, nn.init.trunc_normal_
        timm = types.ModuleType('timm')
        models = types.ModuleType('timm.models')
        timm.models, models.layers = models, layers
        sys.modules.update({'timm': timm, 'timm.models': models, 'timm.models.layers': layers})
    try:
        import torchvision.models.utils  # noqa: F401
    except Exception:
        utils = types.ModuleType('torchvision.models.utils')
        utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url
        sys.modules['torchvision.models.utils'] = utils


AUTHOR_FILES = ['ResNet/test_bottleneck.py', 'ResNet/ResNet_ImageNet.py',
                'Swin-Transformer/models/swin_transformer.py',
                'Swin-Transformer/models/swin_transformer_acmix.py']


def load_authors_code(repo):
    """Copies the four model files out of a checkout or a bare git dir; returns (modules, commit)."""
    tmp = tempfile.mkdtemp(prefix='acmix-authors-')
    bare = not os.path.exists(os.path.join(repo, AUTHOR_FILES[0]))
    commit = None
    try:
        git = ['git', '--git-dir', repo] if bare else ['git', '-C', repo]
        commit = subprocess.run(git + ['rev-parse', 'HEAD'], capture_output=True, text=True,
                                check=True).stdout.strip()
    except Exception:
        pass
    for f in AUTHOR_FILES:
        dst = os.path.join(tmp, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if bare:
            data = subprocess.run(['git', '--git-dir', repo, 'show', f'HEAD:{f}'], capture_output=True,
                                  check=True).stdout
        else:
            with open(os.path.join(repo, f), 'rb') as fh:
                data = fh.read()
        with open(dst, 'wb') as fh:
            fh.write(data)
    _shims()
    sys.path.insert(0, os.path.join(tmp, 'ResNet'))  # ResNet_ImageNet does `from test_bottleneck import ACmix`
    mods = {}
    for name, f in [('ResNet_ImageNet', AUTHOR_FILES[1]), ('swin_transformer', AUTHOR_FILES[2]),
                    ('swin_transformer_acmix', AUTHOR_FILES[3])]:
        spec = importlib.util.spec_from_file_location(name, os.path.join(tmp, f))
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        mods[name] = m
    return mods, commit


def build_models(mods):
    import torchvision
    rn = mods['ResNet_ImageNet']
    swin, swin_acmix = mods['swin_transformer'], mods['swin_transformer_acmix']
    swin_kw = dict(img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
                   num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4., qkv_bias=True, qk_scale=None,
                   drop_rate=0., drop_path_rate=0., ape=False, patch_norm=True)  # drop path: no-op in eval
    return {
        'resnet50': (lambda: torchvision.models.resnet50(weights=None),
                     'torchvision.models.resnet50(weights=None)'),
        'acmix_resnet26': (lambda: rn.ACmix_ResNet(layers=[1, 2, 4, 1]),
                           'authors ResNet_ImageNet.ACmix_ResNet(layers=[1,2,4,1]) k_att 7 head 4 k_conv 3'),
        'acmix_resnet38': (lambda: rn.ACmix_ResNet(layers=[2, 3, 5, 2]),
                           'authors ResNet_ImageNet.ACmix_ResNet(layers=[2,3,5,2]) k_att 7 head 4 k_conv 3'),
        'acmix_resnet50': (lambda: rn.ACmix_ResNet(layers=[3, 4, 6, 3]),
                           'authors ResNet_ImageNet.ACmix_ResNet(layers=[3,4,6,3]) k_att 7 head 4 k_conv 3'),
        'swin_tiny': (lambda: swin.SwinTransformer(depths=[2, 2, 6, 2], **swin_kw),
                      'authors-vendored swin_transformer.SwinTransformer, swin_tiny_patch4_window7_224'),
        'acmix_swin_tiny': (lambda: swin_acmix.SwinTransformer_acmix(depths=[2, 2, 6, 2], **swin_kw),
                            'authors swin_transformer_acmix.SwinTransformer_acmix, acmix_swin_tiny_patch4_window7_224'),
        'swin_small': (lambda: swin.SwinTransformer(depths=[2, 2, 18, 2], **swin_kw),
                       'authors-vendored swin_transformer.SwinTransformer, swin_small_patch4_window7_224'),
        'acmix_swin_small': (lambda: swin_acmix.SwinTransformer_acmix(depths=[2, 2, 18, 2], **swin_kw),
                             'authors swin_transformer_acmix.SwinTransformer_acmix, acmix_swin_small_patch4_window7_224'),
    }


# --------------------------------------------------------------------------- counting
def _num(v):
    return int(v) if float(v).is_integer() else float(v)


def acmix_resnet_attention_macs(model, x):
    """Multiply-adds of the ResNet ACmix local attention that fvcore cannot see (it is written as
    broadcast mul + sum over unfolded 7x7 windows): per ACmix module with output (B, C, Ho, Wo),
    logits q.(k + pe_q - pe_j) = B*C*k^2*Ho*Wo and aggregation sum_j a_j v_j = B*C*k^2*Ho*Wo."""
    import torch
    total, hooks = [0], []
    for m in model.modules():
        if type(m).__name__ == 'ACmix':
            def hook(mod, inp, out):
                b, c, ho, wo = out.shape
                total[0] += 2 * b * c * mod.kernel_att ** 2 * ho * wo
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def count_fvcore(model, x):
    import torch
    from fvcore.nn import FlopCountAnalysis
    fca = FlopCountAnalysis(model, (x,))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = fca.total()
    by_module_all = fca.by_module()
    children = [n for n, _ in model.named_children()]
    res = {
        'input': INPUT,
        'fvcore_total': _num(total),
        'fvcore_by_module': {c: _num(by_module_all.get(c, 0)) for c in children},
        'fvcore_by_operator': {k: _num(v) for k, v in sorted(fca.by_operator().items())},
        'unsupported_ops': dict(sorted(fca.unsupported_ops().items())),
    }
    stages = {k: _num(v) for k, v in by_module_all.items() if k.count('.') == 1 and k.startswith('layers.')}
    if stages:
        res['fvcore_by_stage'] = stages
    # ACmix modules (ResNet `ACmix`, Swin `WindowAttention_acmix`): fvcore flops summed over all of
    # them, per child (q/k/v 1x1 convs or qkv linear, conv_p, fc, dep_conv, proj) and for the ops
    # in their own forward (Swin: the q@k^T and attn@v matmuls).
    acm = [n for n, m in model.named_modules() if type(m).__name__ in ('ACmix', 'WindowAttention_acmix')]
    if acm:
        parts = Counter()
        for n in acm:
            own = by_module_all.get(n, 0)
            for c, _ in dict(model.named_modules())[n].named_children():
                parts[c] += by_module_all.get(f'{n}.{c}', 0)
                own -= by_module_all.get(f'{n}.{c}', 0)
            parts['(own forward)'] += own
        res['fvcore_acmix_modules'] = {'count': len(acm), 'total': _num(sum(by_module_all.get(n, 0) for n in acm)),
                                       'by_child': {k: _num(v) for k, v in sorted(parts.items())}}
    return res


def count_params(model):
    res = {'params_total': sum(p.numel() for p in model.parameters()), 'params_by_module': {}}
    for n, m in model.named_children():
        res['params_by_module'][n] = sum(p.numel() for p in m.parameters())
    direct = sum(p.numel() for p in model.parameters(recurse=False))
    if direct:
        res['params_by_module']['(root)'] = direct
    return res


def mm_counts():
    """Runs inside the mmcv/mmengine interpreter; prints one JSON object."""
    import warnings
    warnings.filterwarnings('ignore')
    import torch
    import torchvision
    out = {}
    model = torchvision.models.resnet50(weights=None).eval()
    try:
        from mmcv.cnn import get_model_complexity_info as mmcv_gmci
        import mmcv
        flops, params = mmcv_gmci(model, (3, 224, 224), print_per_layer_stat=False, as_strings=False)
        out['mmcv.cnn.get_model_complexity_info'] = {'version': mmcv.__version__, 'flops': _num(flops),
                                                     'params': _num(params)}
    except Exception as e:  # pragma: no cover
        out['mmcv.cnn.get_model_complexity_info'] = {'error': repr(e)}
    try:
        from mmengine.analysis import get_model_complexity_info as mme_gmci
        import mmengine
        r = mme_gmci(torchvision.models.resnet50(weights=None).eval(), input_shape=(3, 224, 224),
                     show_table=False, show_arch=False)
        out['mmengine.analysis.get_model_complexity_info'] = {
            'version': mmengine.__version__, 'flops': _num(r['flops']), 'params': _num(r['params'])}
    except Exception as e:  # pragma: no cover
        out['mmengine.analysis.get_model_complexity_info'] = {'error': repr(e)}
    out['torch'] = torch.__version__
    print('MMJSON' + json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--acmix-repo', default=os.environ.get('ACMIX_REPO', '/work/.mirror/LeapLabTHU+ACmix/repo'))
    ap.add_argument('--mm-python', default=os.environ.get('MM_PYTHON', os.path.expanduser('~/.mmref/bin/python')))
    ap.add_argument('--mm-pythonpath', default=os.environ.get('MM_PYTHONPATH', '/work/shared/mmref'))
    ap.add_argument('--out', default=os.path.join(HERE, 'flops_reference.json'))
    ap.add_argument('--models', default='', help='comma-separated subset')
    ap.add_argument('--mm-only', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mm_only:
        return mm_counts()

    import logging
    import warnings
    warnings.filterwarnings('ignore')
    logging.getLogger('fvcore').setLevel(logging.ERROR)
    import torch
    import torchvision
    import fvcore
    torch.manual_seed(0)
    mods, commit = load_authors_code(args.acmix_repo)
    x = torch.randn(*INPUT)
    result = {'_meta': {
        'generator': 'Tests/Fixtures/flops/make_flops_reference.py',
        'torch': torch.__version__, 'torchvision': torchvision.__version__,
        'fvcore': getattr(fvcore, '__version__', 'unknown'),
        'acmix_repo': 'github.com/LeapLabTHU/ACmix', 'acmix_commit': commit,
        'conventions': 'fvcore default handles; 1 multiply-add = 1 flop; eval mode; batch 1',
    }}
    wanted = set(filter(None, args.models.split(',')))
    for name, (ctor, desc) in build_models(mods).items():
        if wanted and name not in wanted:
            continue
        model = ctor().eval()
        entry = {'model': desc}
        entry.update(count_fvcore(model, x))
        entry.update(count_params(model))
        extra = {}
        if name.startswith('acmix_resnet'):
            extra['acmix_local_attention_macs_not_counted_by_fvcore'] = acmix_resnet_attention_macs(model, x)
        if hasattr(model, 'flops'):
            extra['model_flops_method'] = _num(model.flops())  # Swin repo's analytic count (its papers' figure)
        if extra:
            entry['extra'] = extra
        result[name] = entry
        print(f"{name:18s} fvcore {entry['fvcore_total'] / 1e9:8.4f} G  params {entry['params_total'] / 1e6:8.3f} M"
              f"  unsupported {entry['unsupported_ops']}", file=sys.stderr)

    if args.mm_python and 'resnet50' in result:
        env = dict(os.environ, PYTHONPATH=args.mm_pythonpath)
        try:
            p = subprocess.run([args.mm_python, os.path.abspath(__file__), '--mm-only'], env=env,
                               capture_output=True, text=True, timeout=600)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith('MMJSON')]
            result['resnet50']['openmmlab'] = (json.loads(line[-1][6:]) if line
                                               else {'error': p.stderr[-2000:]})
        except Exception as e:
            result['resnet50']['openmmlab'] = {'error': repr(e)}
        print('resnet50 openmmlab:', json.dumps(result['resnet50']['openmmlab']), file=sys.stderr)

    with open(args.out, 'w') as fh:
        json.dump(result, fh, indent=1)
        fh.write('\n')
    print('wrote', args.out, file=sys.stderr)


if __name__ == '__main__':
    main()
