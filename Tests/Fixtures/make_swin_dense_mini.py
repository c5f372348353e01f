"""Reference for SwinDenseTests: the mmdetection / Swin-Transformer-Object-Detection dense forward (pad the image to
patch multiples, pad each block's map to window multiples with masks for the padded size, pad odd maps before
patch merging, per-output LayerNorms norm0..norm3) composed from the peer PyTorch modules
(/work/shared/peer/acmix_torch.py) with the ACmix mini weights. Run with the peer venv:
    ~/.acmix-peer/bin/python Tests/Fixtures/make_swin_dense_mini.py   (from the repository root)
"""
import sys, torch, torch.nn.functional as F
sys.path.insert(0, '/work/shared/peer')
import acmix_torch as A
from safetensors.torch import load_file, save_file
torch.manual_seed(1)
sd = load_file('/work/shared/reference/acmix/acmix_swin_mini.weights.safetensors')
m = A.SwinTransformer(224, 4, 32, (2, 2, 2, 2), (1, 2, 4, 8), 7, 10, acmix=True).eval()
m.load_state_dict({k: v for k, v in sd.items()}, strict=False)
ws = 7
norms = [torch.nn.LayerNorm(32 * 2 ** i) for i in range(4)]
for n in norms:
    with torch.no_grad(): n.weight.copy_(1 + 0.1 * torch.randn_like(n.weight)); n.bias.copy_(0.05 * torch.randn_like(n.bias))

def block_fwd(blk, attn, x, H, W, shift):
    B, L, C = x.shape
    sc = x
    x = blk.norm1(x).view(B, H, W, C)
    pr = (ws - W % ws) % ws; pb = (ws - H % ws) % ws
    x = F.pad(x, (0, 0, 0, pr, 0, pb))
    Hp, Wp = x.shape[1], x.shape[2]
    mask = A.shifted_window_mask(Hp, Wp, ws, shift) if shift else None
    if shift: x = torch.roll(x, (-shift, -shift), (1, 2))
    x = attn(x, mask)
    if shift: x = torch.roll(x, (shift, shift), (1, 2))
    x = x[:, :H, :W, :].reshape(B, H * W, C)
    x = sc + x
    return x + blk.mlp(blk.norm2(x))

def merge(pm, x, H, W):
    B, L, C = x.shape
    x = x.view(B, H, W, C)
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x0 = x[:, 0::2, 0::2]; x1 = x[:, 1::2, 0::2]; x2 = x[:, 0::2, 1::2]; x3 = x[:, 1::2, 1::2]
    x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)
    return pm.reduction(pm.norm(x))

def dense(x):
    B, _, H, W = x.shape
    x = F.pad(x, (0, (4 - W % 4) % 4, 0, (4 - H % 4) % 4))
    x = m.patch_embed.proj(x); Wh, Ww = x.shape[2], x.shape[3]
    x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))
    outs = []
    for i, st in enumerate(m.layers):
        for j, blk in enumerate(st.blocks):
            # the classifier blocks in the last stage got window=7 anyway (7x7 map); attention module works on any map
            x = block_fwd(blk, blk.attn, x, Wh, Ww, (j % 2) * (ws // 2))
        outs.append(norms[i](x).view(B, Wh, Ww, -1).permute(0, 3, 1, 2).contiguous())
        if st.downsample is not None:
            x = merge(st.downsample, x, Wh, Ww); Wh, Ww = (Wh + 1) // 2, (Ww + 1) // 2
    return outs

x = torch.randn(2, 3, 58, 45)
with torch.no_grad(): outs = dense(x)
io = {'input': x}
for i, o in enumerate(outs): io[f'out{i}'] = o; print(o.shape)
for i, n in enumerate(norms): io[f'norm{i}.weight'] = n.weight.detach(); io[f'norm{i}.bias'] = n.bias.detach()
import os
save_file(io, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'swin_dense_mini.safetensors'), metadata={'input': '2x3x58x45', 'weights': 'acmix_swin_mini.weights.safetensors + norm0..3 from this file', 'logic': 'Swin-Transformer-Object-Detection dense forward on the peer modules'})
