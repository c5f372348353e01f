import Foundation

/// ACmix's attention path as one fused op: for every query position, softmax attention over its
/// kernel×kernel reflection-padded neighbourhood, without ever unfolding keys or values.
///
/// The authors compute logits q·(k_j + pe_q − pe_j). The pe_q term is the same for every j of a query, so
/// it cancels in the softmax (and its gradient, Σ_j ∂logit_j, is zero): the kernel uses q·(k_j − pe_j).
///
/// - qkv: [B, H·W, 3·heads·d] channels-last, channel blocks q | k | v, each head-major (head·d + c), as the three
///   1×1 projections produce them.
/// - pe: [H·W, d] positional encoding (conv_p of the coordinate grid), shared by heads and batch.
/// - Returns [B, Ho·Wo, heads·d] with Ho = (H−1)/stride + 1, queries taken every `stride` pixels.
public func acmixLocalAttention(_ qkv: Tensor, _ pe: Tensor, heads: Int, height h: Int, width w: Int,
                                kernel: Int, stride s: Int, scale: Float) -> Tensor {
    let b = qkv.shape[0], c3 = qkv.shape[2], nd = c3 / 3, d = nd / heads
    let pad = kernel / 2
    precondition(qkv.shape[1] == h * w && c3 == 3 * heads * d && pe.shape == [h * w, d],
                 "acmix attention: qkv \(qkv.shape), pe \(pe.shape), \(heads) heads, \(h)x\(w)")
    precondition(h > pad && w > pad, "ACmix attention needs feature maps larger than \(pad) pixels (kernel \(kernel)), got \(h)x\(w)")
    let ho = (h - 1) / s + 1, wo = (w - 1) / s + 1, kk = kernel * kernel
    // Source pixel of every (output position, tap): reflection padding resolved once for all channels.
    var table = [Int32](repeating: 0, count: ho * wo * kk)
    for oy in 0..<ho { for ox in 0..<wo { for ty in 0..<kernel { for tx in 0..<kernel {
        let ry = reflectIndex(oy * s + ty - pad, h), rx = reflectIndex(ox * s + tx - pad, w)
        table[((oy * wo + ox) * kernel + ty) * kernel + tx] = Int32(ry * w + rx)
    } } } }
    let out = Tensor(uninitialized: [b, ho * wo, nd])
    let x = qkv.data, p = pe.data, y = out.data
    table.withUnsafeBufferPointer { tb in
        let tb = tb.baseAddress!
        parallelChunks(b * heads * ho * wo, cost: kk * d * 4) { start, end in
            var logits = [Float](repeating: 0, count: kk)
            var qs = [Float](repeating: 0, count: d)
            logits.withUnsafeMutableBufferPointer { lg in
            qs.withUnsafeMutableBufferPointer { qv in
                let lg = lg.baseAddress!, qv = qv.baseAddress!
                for item in start..<end {
                    let pos = item % (ho * wo), bh = item / (ho * wo), hd = bh % heads, bi = bh / heads
                    let oy = pos / wo, ox = pos % wo
                    let base = x + bi * h * w * c3
                    let qrow = base + (oy * s * w + ox * s) * c3 + hd * d
                    for c in 0..<d { qv[c] = qrow[c] * scale }
                    let taps = tb + pos * kk
                    var m = -Float.infinity
                    for j in 0..<kk {
                        let r = Int(taps[j])
                        let acc = dotDiff(qv, base + r * c3 + nd + hd * d, p + r * d, d)
                        lg[j] = acc
                        m = max(m, acc)
                    }
                    var sum: Float = 0
                    for j in 0..<kk { let e = fastExp(lg[j] - m); lg[j] = e; sum += e }
                    let inv = 1 / sum
                    let orow = y + (bi * ho * wo + pos) * nd + hd * d
                    for c in 0..<d { orow[c] = 0 }
                    for j in 0..<kk {
                        let a = lg[j] * inv
                        let vrow = base + Int(taps[j]) * c3 + 2 * nd + hd * d
                        for c in 0..<d { orow[c] += a * vrow[c] }
                    }
                }
            } }
        }
    }
    return out.record("acmix_local_attention", [qkv, pe]) { g in
        let gqkv = Tensor(zeros: qkv.shape)
        let gx = gqkv.data, gy = g.data
        // (batch, head) pairs write disjoint channel slices of gqkv; pe gradients go to per-pair buffers.
        let pairs = b * heads
        let gpe = Tensor(zeros: [pairs, h * w, d])
        let gp = gpe.data
        table.withUnsafeBufferPointer { tb in
            let tb = tb.baseAddress!
            parallelFor(pairs, cost: ho * wo * kk * d * 6) { bh in
                let hd = bh % heads, bi = bh / heads
                let base = x + bi * h * w * c3, gbase = gx + bi * h * w * c3, gpp = gp + bh * h * w * d
                var att = [Float](repeating: 0, count: kk), ga = [Float](repeating: 0, count: kk), qs = [Float](repeating: 0, count: d)
                for pos in 0..<(ho * wo) {
                    let oy = pos / wo, ox = pos % wo
                    let qoff = (oy * s * w + ox * s) * c3 + hd * d
                    for c in 0..<d { qs[c] = base[qoff + c] * scale }
                    let taps = tb + pos * kk
                    var m = -Float.infinity
                    for j in 0..<kk {
                        let r = Int(taps[j])
                        let acc = dotDiff(qs, base + r * c3 + nd + hd * d, p + r * d, d)
                        att[j] = acc; m = max(m, acc)
                    }
                    var sum: Float = 0
                    for j in 0..<kk { att[j] = fastExp(att[j] - m); sum += att[j] }
                    let grow = gy + (bi * ho * wo + pos) * nd + hd * d
                    var dot: Float = 0
                    for j in 0..<kk {
                        att[j] /= sum
                        let r = Int(taps[j])
                        let vrow = base + r * c3 + 2 * nd + hd * d, gvrow = gbase + r * c3 + 2 * nd + hd * d
                        let acc = Engine.dot(grow, vrow, d)
                        let a = att[j]
                        for c in 0..<d { gvrow[c] += a * grow[c] }
                        ga[j] = acc; dot += a * acc
                    }
                    let gq = gbase + qoff
                    for j in 0..<kk {
                        let gl = att[j] * (ga[j] - dot)
                        let r = Int(taps[j])
                        let krow = base + r * c3 + nd + hd * d, prow = p + r * d
                        let gkrow = gbase + r * c3 + nd + hd * d, gprow = gpp + r * d
                        for c in 0..<d {
                            gq[c] += gl * scale * (krow[c] - prow[c])
                            gkrow[c] += gl * qs[c]
                            gprow[c] -= gl * qs[c]
                        }
                    }
                }
            }
        }
        return [qkv.requiresGrad ? gqkv : nil, pe.requiresGrad ? gpe.sum(axes: [0]) : nil]
    }
}
