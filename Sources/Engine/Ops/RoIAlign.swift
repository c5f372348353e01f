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
        let bins = outH * outW
        // Channels last, so that each tap is read once for every channel and its four reads are contiguous: the
        // per-channel loop re-read the taps (48 bytes each) once per channel. Per channel the sums run in the same
        // order as before, so the results are the same.
        let xl = channelsLast(data, n: n, c: c, plane: h * w), y = out.data
        parallelFor(k, cost: c * bins * 16) { r in
            let image = xl + samples.batch[r] * h * w * c
            var acc = [Float](repeating: 0, count: c)
            acc.withUnsafeMutableBufferPointer { acc in
                let acc = acc.baseAddress!
                for b in 0..<bins {
                    acc.update(repeating: 0, count: c)
                    for s in samples.range(r, b) {
                        let t = samples.taps[s]
                        guard t.i1 >= 0 else { continue }
                        let p1 = image + t.i1 * c, p2 = image + t.i2 * c, p3 = image + t.i3 * c, p4 = image + t.i4 * c
                        for ch in 0..<c { acc[ch] += t.w1 * p1[ch] + t.w2 * p2[ch] + t.w3 * p3[ch] + t.w4 * p4[ch] }
                    }
                    let dst = y + r * c * bins + b, count = samples.count[r]
                    for ch in 0..<c { dst[ch * bins] = acc[ch] / count }
                }
            }
        }
        xl.deallocate()
        let inShape = shape
        return out.record("roi_align", [self]) { g in
            // Channels last as well; each thread owns a block of channels (rois of one image add into the same
            // pixels), and within a channel the rois, bins and taps add in the same order as before.
            let gl = UnsafeMutablePointer<Float>.allocate(capacity: n * h * w * c)
            gl.initialize(repeating: 0, count: n * h * w * c)
            let gd = g.data, blocks = Swift.min(c, Swift.max(1, Threads.count))
            parallelFor(blocks, cost: k * bins * c * 4) { blk in
                let lo = c * blk / blocks, hi = c * (blk + 1) / blocks
                var v = [Float](repeating: 0, count: hi - lo)
                for r in 0..<k {
                    let image = gl + samples.batch[r] * h * w * c, count = samples.count[r]
                    for b in 0..<bins {
                        for ch in lo..<hi { v[ch - lo] = gd[(r * c + ch) * bins + b] / count }
                        for s in samples.range(r, b) {
                            let t = samples.taps[s]
                            guard t.i1 >= 0 else { continue }
                            let p1 = image + t.i1 * c, p2 = image + t.i2 * c, p3 = image + t.i3 * c, p4 = image + t.i4 * c
                            for ch in lo..<hi {
                                let x = v[ch - lo]
                                p1[ch] += t.w1 * x; p2[ch] += t.w2 * x; p3[ch] += t.w3 * x; p4[ch] += t.w4 * x
                            }
                        }
                    }
                }
            }
            let gx = Tensor(uninitialized: inShape)
            channelsFirst(gl, into: gx.data, n: n, c: c, plane: h * w)
            gl.deallocate()
            return [gx]
        }
    }
}

/// [N, C, P] → a new [N, P, C] buffer (the caller deallocates it).
func channelsLast(_ x: UnsafePointer<Float>, n: Int, c: Int, plane: Int) -> UnsafeMutablePointer<Float> {
    let out = UnsafeMutablePointer<Float>.allocate(capacity: n * c * plane)
    parallelFor(n * plane, cost: c) { i in
        let b = i / plane, p = i % plane, src = x + b * c * plane + p, dst = out + i * c
        for ch in 0..<c { dst[ch] = src[ch * plane] }
    }
    return out
}

/// [N, P, C] → [N, C, P] into `out`.
func channelsFirst(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, n: Int, c: Int, plane: Int) {
    parallelFor(n * c, cost: plane) { i in
        let b = i / c, ch = i % c, src = x + b * plane * c + ch, dst = out + i * plane
        for p in 0..<plane { dst[p] = src[p * c] }
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

    /// Every sample has a slot (gridH · gridW per bin), so the rois fill their slots in parallel; a sample more than
    /// a pixel outside the map keeps a tap with `i1` −1 (skipped: mmcv's zero sample).
    init(rois: [Float], batch n: Int, height h: Int, width w: Int, outH: Int, outW: Int, spatialScale: Float,
         samplingRatio: Int, aligned: Bool) {
        bins = outH * outW
        let offset: Float = aligned ? 0.5 : 0
        let k = rois.count / 5
        var grids: [(y1: Float, x1: Float, binH: Float, binW: Float, gridH: Int, gridW: Int)] = []
        grids.reserveCapacity(k)
        offsets.reserveCapacity(k * bins + 1)
        for r in 0..<k {
            let b = Int(rois[5 * r])
            precondition(b >= 0 && b < n, "roiAlign: roi \(r) names image \(b) of a batch of \(n)")
            batch.append(b)
            let x1 = rois[5 * r + 1] * spatialScale - offset, y1 = rois[5 * r + 2] * spatialScale - offset
            var rw = rois[5 * r + 3] * spatialScale - offset - x1, rh = rois[5 * r + 4] * spatialScale - offset - y1
            if !aligned { rw = max(rw, 1); rh = max(rh, 1) }
            let binH = rh / Float(outH), binW = rw / Float(outW)
            let gridH = max(samplingRatio > 0 ? samplingRatio : Int((rh / Float(outH)).rounded(.up)), 0)
            let gridW = max(samplingRatio > 0 ? samplingRatio : Int((rw / Float(outW)).rounded(.up)), 0)
            count.append(Float(max(gridH * gridW, 1)))
            grids.append((y1, x1, binH, binW, gridH, gridW))
            for _ in 0..<bins { offsets.append(offsets[offsets.count - 1] + gridH * gridW) }
        }
        taps = [Tap](repeating: Tap(i1: -1), count: offsets[offsets.count - 1])
        let bins = bins, starts = offsets
        taps.withUnsafeMutableBufferPointer { taps in
            let taps = taps.baseAddress!
            parallelFor(k, cost: bins * 64) { r in
                let g = grids[r]
                var slot = starts[r * bins]
                for ph in 0..<outH {
                    for pw in 0..<outW {
                        for iy in 0..<g.gridH {
                            let y = g.y1 + Float(ph) * g.binH + (Float(iy) + 0.5) * g.binH / Float(g.gridH)
                            for ix in 0..<g.gridW {
                                let x = g.x1 + Float(pw) * g.binW + (Float(ix) + 0.5) * g.binW / Float(g.gridW)
                                if let t = Self.tap(y: y, x: x, height: h, width: w) { taps[slot] = t }
                                slot += 1
                            }
                        }
                    }
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
