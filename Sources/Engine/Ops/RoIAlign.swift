import Foundation

/// mmcv's RoIAlign (average mode), the op two-stage detectors crop region features with.
///
/// - features: [N, C, H, W]; rois: K × [batch index, x1, y1, x2, y2] in input pixels (flat, 5·K floats, no gradient).
/// - Each roi is scaled by `spatialScale`, shifted by −0.5 when `aligned` (pixel centres, mmcv's `aligned=True`),
///   and cut into outH × outW bins; each bin averages `samplingRatio`² bilinear samples, or, with `samplingRatio` 0,
///   ceil(roi height / outH) × ceil(roi width / outW) of them (mmcv's adaptive count).
/// - Bilinear samples follow mmcv's border rules: a sample more than one pixel outside the map is 0; otherwise it is
///   clamped into the map.
/// - Returns [K, C, outH, outW]; the gradient flows to `features` only.
extension Tensor {
    public func roiAlign(rois: [Float], outH: Int, outW: Int, spatialScale: Float, samplingRatio: Int = 0,
                         aligned: Bool = true) -> Tensor {
        precondition(rank == 4 && rois.count % 5 == 0 && outH > 0 && outW > 0 && samplingRatio >= 0, "roiAlign: bad arguments")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let k = rois.count / 5
        let samples = RoISamples(rois: rois, batch: n, height: h, width: w, outH: outH, outW: outW, spatialScale: spatialScale,
                                 samplingRatio: samplingRatio, aligned: aligned)
        let out = Tensor(zeros: [k, c, outH, outW])
        let x = data, y = out.data, bins = outH * outW
        parallelFor(k * c, cost: bins * 16) { kc in
            let r = kc / c, ch = kc % c
            let plane = x + (samples.batch[r] * c + ch) * h * w, dst = y + kc * bins
            for b in 0..<bins {
                var acc: Float = 0
                for s in samples.range(r, b) {
                    let t = samples.taps[s]
                    acc += t.w1 * plane[t.i1] + t.w2 * plane[t.i2] + t.w3 * plane[t.i3] + t.w4 * plane[t.i4]
                }
                dst[b] = acc / samples.count[r]
            }
        }
        let inShape = shape
        return out.record("roi_align", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            // Per channel, so that rois of the same image never add into one plane from two threads.
            parallelFor(c, cost: k * bins * 16) { ch in
                for r in 0..<k {
                    let plane = gxd + (samples.batch[r] * c + ch) * h * w, src = gd + (r * c + ch) * bins
                    for b in 0..<bins {
                        let v = src[b] / samples.count[r]
                        for s in samples.range(r, b) {
                            let t = samples.taps[s]
                            plane[t.i1] += t.w1 * v; plane[t.i2] += t.w2 * v; plane[t.i3] += t.w3 * v; plane[t.i4] += t.w4 * v
                        }
                    }
                }
            }
            return [gx]
        }
    }
}

/// The bilinear taps of every sample of every bin of every roi, shared by the forward and backward passes.
struct RoISamples {
    struct Tap { var i1 = 0, i2 = 0, i3 = 0, i4 = 0; var w1: Float = 0, w2: Float = 0, w3: Float = 0, w4: Float = 0 }
    var taps: [Tap] = []
    /// Start of each (roi, bin)'s taps in `taps`; one more entry at the end.
    var offsets: [Int] = [0]
    /// Per roi: its image in the batch and the number of samples per bin (mmcv's `count`, at least 1).
    var batch: [Int] = [], count: [Float] = []
    let bins: Int

    init(rois: [Float], batch n: Int, height h: Int, width w: Int, outH: Int, outW: Int, spatialScale: Float,
         samplingRatio: Int, aligned: Bool) {
        bins = outH * outW
        let offset: Float = aligned ? 0.5 : 0
        for r in 0..<(rois.count / 5) {
            let b = Int(rois[5 * r])
            precondition(b >= 0 && b < n, "roiAlign: roi \(r) names image \(b) of a batch of \(n)")
            batch.append(b)
            let x1 = rois[5 * r + 1] * spatialScale - offset, y1 = rois[5 * r + 2] * spatialScale - offset
            var rw = rois[5 * r + 3] * spatialScale - offset - x1, rh = rois[5 * r + 4] * spatialScale - offset - y1
            if !aligned { rw = max(rw, 1); rh = max(rh, 1) }
            let binH = rh / Float(outH), binW = rw / Float(outW)
            let gridH = samplingRatio > 0 ? samplingRatio : Int((rh / Float(outH)).rounded(.up))
            let gridW = samplingRatio > 0 ? samplingRatio : Int((rw / Float(outW)).rounded(.up))
            count.append(Float(max(gridH * gridW, 1)))
            for ph in 0..<outH {
                for pw in 0..<outW {
                    for iy in 0..<max(gridH, 0) {
                        let y = y1 + Float(ph) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
                        for ix in 0..<max(gridW, 0) {
                            let x = x1 + Float(pw) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
                            if let t = Self.tap(y: y, x: x, height: h, width: w) { taps.append(t) }
                        }
                    }
                    offsets.append(taps.count)
                }
            }
        }
    }

    func range(_ roi: Int, _ bin: Int) -> Range<Int> { offsets[roi * bins + bin]..<offsets[roi * bins + bin + 1] }

    /// mmcv's `bilinear_interpolate` as four weighted taps; nil (a zero sample) more than a pixel outside the map.
    static func tap(y yIn: Float, x xIn: Float, height h: Int, width w: Int) -> Tap? {
        if yIn < -1 || yIn > Float(h) || xIn < -1 || xIn > Float(w) { return nil }
        var y = max(yIn, 0), x = max(xIn, 0)
        var yLow = Int(y), xLow = Int(x), yHigh: Int, xHigh: Int
        if yLow >= h - 1 { yLow = h - 1; yHigh = h - 1; y = Float(yLow) } else { yHigh = yLow + 1 }
        if xLow >= w - 1 { xLow = w - 1; xHigh = w - 1; x = Float(xLow) } else { xHigh = xLow + 1 }
        let ly = y - Float(yLow), lx = x - Float(xLow), hy = 1 - ly, hx = 1 - lx
        return Tap(i1: yLow * w + xLow, i2: yLow * w + xHigh, i3: yHigh * w + xLow, i4: yHigh * w + xHigh,
                   w1: hy * hx, w2: hy * lx, w3: ly * hx, w4: ly * lx)
    }
}
