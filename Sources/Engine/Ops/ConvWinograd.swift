/// The engine's F(4×4, 3×3) Winograd convolution, for inference on CPUs where oneDNN 2.6 has none (below AVX-512).
///
/// Each 4×4 output tile comes from a 6×6 input tile: V = Bᵀ d B per input channel, U = G g Gᵀ per filter, then for
/// each of the 36 points one product M = U·V over the channels (sgemm), and y = Aᵀ M A: 2.25 multiplications per output
/// and channel instead of 9. The matrices are Toom-Cook's for the points 0, 1, −1, 1/2, −2: the usual 0, ±1, ±2 amplify
/// the rounding of the sums over the channels by up to 8² (simulated in float32 over 256 channels: largest error
/// 3.6e-5 against 1.1e-5, for a largest output of 3.2). On an AMD EPYC (Zen 3, AVX2) RetinaNet R50 at 800×1333 runs
/// 1.5× faster with it (its head towers' convolutions 1.8–2× each, single-threaded). The work is split into
/// blocks of tile rows; each thread transforms a block's input, runs its 36 products and writes its outputs with the
/// epilogue (`ConvEpilogue`, after the bias) while the block is in cache.
enum EngineWinograd {
    /// Tiles per block: enough columns for an efficient product, few enough that a block's transformed input and
    /// products stay within a few MB.
    static let tilesPerBlock = 96

    /// Channels per product: the sums over the channels are the one rounding that Aᵀ M A amplifies, and a product's
    /// sum is one sequence of additions; summing 64 at a time and adding those sums cuts the largest error about 2.3×
    /// (float32 simulation over 256 channels: 1.05e-5 → 4.5e-6, a direct convolution's own 2.9e-6).
    static let sumChunk = 64

    /// Geometries it runs: 3×3, stride 1, undilated, ungrouped, ≥ 64 channels in and out, output planes of 64×64 and
    /// up (the rule oneDNN's Winograd follows here on AVX-512 CPUs, without its multiple-of-16 channel counts).
    static func applies(_ g: Conv2dGeometry) -> Bool {
        g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1
            && g.c >= 64 && g.o >= 64 && g.ho * g.wo >= 4096
    }

    /// y [N, O, Ho, Wo] = epilogue(conv(x, w) + bias) for a geometry `applies` accepts.
    static func forward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                        _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue) {
        precondition(applies(g), "EngineWinograd: geometry it does not run")
        let tilesW = (g.wo + 3) / 4, tilesH = (g.ho + 3) / 4
        let rowsPerBlock = max(1, min(tilesH, tilesPerBlock / tilesW))
        let blocksPerImage = (tilesH + rowsPerBlock - 1) / rowsPerBlock
        let u = Storage(count: 36 * g.o * g.c)
        transformFilters(g, w, u.pointer)
        let maxTiles = rowsPerBlock * tilesW
        // Threads claim blocks one at a time (a static split of RetinaNet's 13 blocks at P3 left a thread idle for one).
        func block(_ blk: Int) {
            // The block's transformed input V [36][C][T], its products M [36][O][T], and row scratch.
            let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * g.c * maxTiles)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * g.o * maxTiles)
            let scratch = Scratch(tilesW: tilesW)
            defer { v.deallocate(); m.deallocate(); scratch.deallocate() }
            let b = blk / blocksPerImage, ty0 = blk % blocksPerImage * rowsPerBlock
            let rows = min(rowsPerBlock, tilesH - ty0), tiles = rows * tilesW
            for c in 0..<g.c {
                let plane = x + (b * g.c + c) * g.h * g.w
                for r in 0..<rows {
                    transformInputRow(g, plane, tileRow: ty0 + r, tilesW: tilesW, scratch,
                                      into: v + c * tiles + r * tilesW, pointStride: g.c * tiles)
                }
            }
            serially {
                for p in 0..<36 {
                    // Channels in chunks, each product's sum added to the last: see `sumChunk`.
                    for c0 in stride(from: 0, to: g.c, by: sumChunk) {
                        sgemm(m: g.o, n: tiles, k: Swift.min(sumChunk, g.c - c0), a: u.pointer + p * g.o * g.c + c0, lda: g.c,
                              b: v + (p * g.c + c0) * tiles, ldb: tiles, beta: c0 == 0 ? 0 : 1, c: m + p * g.o * tiles, ldc: tiles)
                    }
                }
            }
            for o in 0..<g.o {
                for r in 0..<rows {
                    transformOutputRow(g, m + o * tiles + r * tilesW, pointStride: g.o * tiles, tileRow: ty0 + r, tilesW: tilesW,
                                       scratch, bias: bias?[o] ?? 0, epilogue, channel: o, into: y, plane: b * g.o + o)
                }
            }
        }
        let blocks = g.n * blocksPerImage
        if Threads.serialHere { for b in 0..<blocks { block(b) } } else { Threads.run(blocks, block) }
    }

    /// Row buffers of one thread, each `stride` floats: 6 input rows in 4 phases, 36 horizontally transformed rows.
    final class Scratch {
        let stride: Int
        let phases: UnsafeMutablePointer<Float>
        let rows: UnsafeMutablePointer<Float>

        init(tilesW: Int) {
            stride = tilesW + 2
            phases = .allocate(capacity: 6 * 4 * stride)
            rows = .allocate(capacity: 36 * stride)
        }

        func deallocate() { phases.deallocate(); rows.deallocate() }
    }

    /// G for the points 0, 1, −1, 1/2, −2 (and ∞), in rows of three.
    static let gMatrix: [Float] = [1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3,
                                   -16.0 / 15, -8.0 / 15, -4.0 / 15, 1.0 / 15, -2.0 / 15, 4.0 / 15, 0, 0, 1]

    /// U [36][O][C] = G g Gᵀ for every filter g [3][3] of w [O, C, 3, 3]. Filters are taken `chunk` at a time (their
    /// flat index o·C + c is U's column): the nine taps into planes, then t = G g (18 planes) and U's 36 rows, each a
    /// loop over the chunk.
    static func transformFilters(_ g: Conv2dGeometry, _ w: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>) {
        let plane = g.o * g.c, chunk = 256, gm = gMatrix
        parallelChunks((plane + chunk - 1) / chunk, cost: chunk * 600) { first, end in
            let taps = UnsafeMutablePointer<Float>.allocate(capacity: 9 * chunk), t = UnsafeMutablePointer<Float>.allocate(capacity: 18 * chunk)
            defer { taps.deallocate(); t.deallocate() }
            gm.withUnsafeBufferPointer { gm in
                for ck in first..<end {
                    let f0 = ck * chunk, n = Swift.min(chunk, plane - f0)
                    for f in 0..<n { for q in 0..<9 { taps[q * chunk + f] = w[(f0 + f) * 9 + q] } }
                    for i in 0..<6 {
                        let a = gm[i * 3], b = gm[i * 3 + 1], c = gm[i * 3 + 2]
                        for j in 0..<3 {
                            let r0 = taps + j * chunk, r1 = taps + (3 + j) * chunk, r2 = taps + (6 + j) * chunk, d = t + (i * 3 + j) * chunk
                            for f in 0..<n { d[f] = a * r0[f] + b * r1[f] + c * r2[f] }
                        }
                    }
                    for i in 0..<6 {
                        let r0 = t + i * 3 * chunk, r1 = r0 + chunk, r2 = r1 + chunk
                        for l in 0..<6 {
                            let a = gm[l * 3], b = gm[l * 3 + 1], c = gm[l * 3 + 2], d = u + (i * 6 + l) * plane + f0
                            for f in 0..<n { d[f] = a * r0[f] + b * r1[f] + c * r2[f] }
                        }
                    }
                }
            }
        }
    }

    /// Eight lanes from p + k (the first `count`, the rest zero).
    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>, _ k: Int, _ count: Int) -> SIMD8<Float> {
        if count == 8 { return UnsafeRawPointer(p + k).loadUnaligned(as: SIMD8<Float>.self) }
        var v = SIMD8<Float>()
        for i in 0..<count { v[i] = p[k + i] }
        return v
    }

    /// The first `count` lanes of v to p + k.
    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ k: Int, _ count: Int) {
        if count == 8 { UnsafeMutableRawPointer(p + k).storeBytes(of: v, as: SIMD8<Float>.self); return }
        for i in 0..<count { p[k + i] = v[i] }
    }

    /// Bᵀ (points 0, 1, −1, 1/2, −2) applied to six values (a row or a column of each 6×6 tile), for `n` tiles, eight at a time: value j of tile k
    /// is s_j[k], its result i goes to d[i * dStride + k].
    @inline(__always)
    static func inputTransform(_ s0: UnsafeMutablePointer<Float>, _ s1: UnsafeMutablePointer<Float>, _ s2: UnsafeMutablePointer<Float>,
                               _ s3: UnsafeMutablePointer<Float>, _ s4: UnsafeMutablePointer<Float>, _ s5: UnsafeMutablePointer<Float>,
                               _ d: UnsafeMutablePointer<Float>, _ dStride: Int, _ n: Int) {
        var k = 0
        while k < n {
            let c = Swift.min(8, n - k)
            let a0 = load(s0, k, c), a1 = load(s1, k, c), a2 = load(s2, k, c), a3 = load(s3, k, c), a4 = load(s4, k, c)
            let a5 = load(s5, k, c)
            store(a0 - 1.5 * a1 - 2 * a2 + 1.5 * a3 + a4, d, k, c)
            store(0.5 * a2 - a1 + 2.5 * a3 + a4, d + dStride, k, c)
            store(a1 - 2.5 * a2 + 0.5 * a3 + a4, d + 2 * dStride, k, c)
            store(2 * (a3 - a1) - a2 + a4, d + 3 * dStride, k, c)
            store(0.5 * (a1 - a3) - a2 + a4, d + 4 * dStride, k, c)
            store(a1 - 1.5 * a2 - 2 * a3 + 1.5 * a4 + a5, d + 5 * dStride, k, c)
            k += 8
        }
    }

    /// Aᵀ (points 0, 1, −1, 1/2, −2) applied to six values, for `n` tiles, eight at a time: value j of tile k is s[j * sStride + k], its result
    /// i (of 4) goes to d[i * dStride + k].
    @inline(__always)
    static func outputTransform(_ s: UnsafeMutablePointer<Float>, _ sStride: Int, _ d: UnsafeMutablePointer<Float>, _ dStride: Int,
                                _ n: Int) {
        var k = 0
        while k < n {
            let c = Swift.min(8, n - k)
            let a1 = load(s + sStride, k, c), a2 = load(s + 2 * sStride, k, c), a3 = load(s + 3 * sStride, k, c)
            let a4 = load(s + 4 * sStride, k, c)
            let p12 = a1 + a2, m12 = a1 - a2
            store(load(s, k, c) + p12 + a3 + a4, d, k, c)
            store(m12 + 0.5 * a3 - 2 * a4, d + dStride, k, c)
            store(p12 + 0.25 * a3 + 4 * a4, d + 2 * dStride, k, c)
            store(m12 + 0.125 * a3 - 8 * a4 + load(s + 5 * sStride, k, c), d + 3 * dStride, k, c)
            k += 8
        }
    }

    /// The 36 transformed values of each tile of one tile row of one input channel: value p of tile k goes to
    /// `into[p * pointStride + k]`.
    static func transformInputRow(_ g: Conv2dGeometry, _ plane: UnsafeMutablePointer<Float>, tileRow ty: Int, tilesW: Int,
                                  _ s: Scratch, into v: UnsafeMutablePointer<Float>, pointStride: Int) {
        let stride = s.stride, n = tilesW
        // Input rows 4ty - ph ..< +6, split by column phase: phase q holds the columns 4k + q - pw (k < tilesW + 1),
        // zero outside the plane, so column j of tile k is phase j % 4 at k + j / 4.
        for r in 0..<6 {
            let ih = 4 * ty - g.ph + r
            for q in 0..<4 {
                let dst = s.phases + (r * 4 + q) * stride
                if ih < 0 || ih >= g.h {
                    dst.update(repeating: 0, count: n + 1)
                    continue
                }
                let src = plane + ih * g.w
                for k in 0...n {
                    let iw = 4 * k + q - g.pw
                    dst[k] = iw >= 0 && iw < g.w ? src[iw] : 0
                }
            }
        }
        // Along the columns: rows[r * 6 + j] = (row r of each tile) · B, column j.
        for r in 0..<6 {
            let ph = s.phases + r * 4 * stride
            inputTransform(ph, ph + stride, ph + 2 * stride, ph + 3 * stride, ph + 1, ph + stride + 1, s.rows + r * 6 * stride, stride, n)
        }
        // Along the rows: Bᵀ of column j, straight into V.
        for j in 0..<6 {
            let src = s.rows + j * stride, rowStep = 6 * stride
            inputTransform(src, src + rowStep, src + 2 * rowStep, src + 3 * rowStep, src + 4 * rowStep, src + 5 * rowStep,
                           v + j * pointStride, 6 * pointStride, n)
        }
    }

    /// One tile row of one output channel: Aᵀ M A of each tile (M's point p of tile k at `m[p * pointStride + k]`),
    /// the 4×4 values plus the bias written where they fall inside output plane `plane` of y (image · O + channel),
    /// then the epilogue on each output row.
    static func transformOutputRow(_ g: Conv2dGeometry, _ m: UnsafeMutablePointer<Float>, pointStride: Int, tileRow ty: Int,
                                   tilesW: Int, _ s: Scratch, bias: Float, _ epilogue: ConvEpilogue, channel: Int,
                                   into y: UnsafeMutablePointer<Float>, plane: Int) {
        let stride = s.stride, n = tilesW
        // Along the columns: rows[i * 6 + j'] holds (row i of M) · A, for j' < 4.
        for i in 0..<6 {
            outputTransform(m + i * 6 * pointStride, pointStride, s.rows + i * 6 * stride, stride, n)
        }
        // Along the rows, into the phase buffers: phases[i * 4 + j] + k is output (4ty + i, 4k + j).
        for j in 0..<4 {
            outputTransform(s.rows + j * stride, 6 * stride, s.phases + j * stride, 4 * stride, n)
        }
        for i in 0..<4 {
            let oh = 4 * ty + i
            guard oh < g.ho else { break }
            let offset = (plane * g.ho + oh) * g.wo, row = y + offset
            let p0 = s.phases + i * 4 * stride, p1 = p0 + stride, p2 = p1 + stride, p3 = p2 + stride
            let whole = g.wo / 4
            for k in 0..<whole {
                row[4 * k] = p0[k] + bias; row[4 * k + 1] = p1[k] + bias; row[4 * k + 2] = p2[k] + bias; row[4 * k + 3] = p3[k] + bias
            }
            for ow in (4 * whole)..<g.wo { row[ow] = (s.phases + (i * 4 + ow % 4) * stride)[whole] + bias }
            if !epilogue.isEmpty { epilogue.apply(row, count: g.wo, channel: channel, residualAt: offset) }
        }
    }
}
