import Dispatch
import Foundation

/// Swin's cyclic shift (torch.roll) with the padding to whole windows, on channels-last maps (B, H, W, C), as one
/// copy each way.

extension Tensor {
    /// (B, H, W, C) → (B, Hp, Wp, C): zero-pads at the bottom/right to Hp×Wp, then rolls rows and columns by
    /// −shift (torch.roll(x, (−s, −s), (1, 2))), in one copy. Hp ≥ H, Wp ≥ W.
    public func windowPadShift(height hp: Int, width wp: Int, shift: Int) -> Tensor {
        precondition(rank == 4 && hp >= shape[1] && wp >= shape[2], "windowPadShift: \(shape) to \(hp)x\(wp)")
        if hp == shape[1] && wp == shape[2] && shift == 0 { return self }
        let (h, w) = (shape[1], shape[2])
        let out = rollCopy(self, outH: hp, outW: wp, modH: hp, modW: wp, offset: shift)
        return out.record("window_pad_shift", [self]) { g in
            [rollCopy(g, outH: h, outW: w, modH: hp, modW: wp, offset: -shift)]
        }
    }

    /// (B, Hp, Wp, C) → (B, H, W, C): rolls rows and columns by +shift, then crops to H×W (the inverse of
    /// `windowPadShift`).
    public func windowUnshiftCrop(height h: Int, width w: Int, shift: Int) -> Tensor {
        precondition(rank == 4 && h <= shape[1] && w <= shape[2], "windowUnshiftCrop: \(shape) to \(h)x\(w)")
        let (hp, wp) = (shape[1], shape[2])
        if hp == h && wp == w && shift == 0 { return self }
        let out = rollCopy(self, outH: h, outW: w, modH: hp, modW: wp, offset: -shift)
        return out.record("window_unshift_crop", [self]) { g in
            [rollCopy(g, outH: hp, outW: wp, modH: hp, modW: wp, offset: shift)]
        }
    }
}

/// out[b, i, j] = x[b, (i + offset) mod modH, (j + offset) mod modW] where that lies inside x, else 0.
func rollCopy(_ x: Tensor, outH: Int, outW: Int, modH: Int, modW: Int, offset: Int) -> Tensor {
    let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(uninitialized: [b, outH, outW, c])
    let xd = x.data, yd = out.data
    parallelFor(b * outH, cost: outW * c) { r in
        let bi = r / outH, i = r % outH
        let si = ((i + offset) % modH + modH) % modH
        let dstRow = yd + r * outW * c
        if si >= h { dstRow.update(repeating: 0, count: outW * c); return }
        let srcRow = xd + (bi * h + si) * w * c
        for j in 0..<outW {
            let sj = ((j + offset) % modW + modW) % modW
            if sj < w { (dstRow + j * c).update(from: srcRow + sj * c, count: c) }
            else { (dstRow + j * c).update(repeating: 0, count: c) }
        }
    }
    return out
}

