import Foundation

/// A binary mask of `h` x `w` pixels as run lengths over its column-major (Fortran) pixel order,
/// alternating 0s and 1s and starting with a run of 0s — pycocotools' `RLE`.
public struct RLE: Equatable, Sendable {
    public var h: Int
    public var w: Int
    public var counts: [UInt32]

    public init(h: Int, w: Int, counts: [UInt32]) {
        self.h = h
        self.w = w
        self.counts = counts
    }
}

/// A box `[x, y, width, height]` in pixels, as COCO writes it.
public struct BBox: Equatable, Sendable {
    public var x: Double
    public var y: Double
    public var w: Double
    public var h: Double

    public init(x: Double, y: Double, w: Double, h: Double) {
        self.x = x
        self.y = y
        self.w = w
        self.h = h
    }

    public init(_ xywh: [Double]) {
        self.init(x: xywh[0], y: xywh[1], w: xywh[2], h: xywh[3])
    }

    public var array: [Double] { [x, y, w, h] }
}

/// pycocotools' `common/maskApi.c`, function for function (same names, same integer and rounding
/// behaviour), so COCO masks, areas, boxes and IoUs come out bit-identical to pycocotools.
public enum MaskAPI {
    /// The largest mask, in pixels, these functions take: counts, areas and positions are pycocotools' 32-bit
    /// unsigned integers, exact while `h * w` stays below 2^32. Loaders refuse larger sizes
    /// (`COCODataset.maxImagePixels`).
    public static let maxPixels = 1 << 31

    /// `h * w` when both are positive and the product is at most `maxPixels`, else nil.
    public static func pixelCount(h: Int, w: Int) -> Int? {
        guard h > 0, w > 0 else { return nil }
        let (n, overflow) = h.multipliedReportingOverflow(by: w)
        return overflow || n > maxPixels ? nil : n
    }

    /// rleEncode: a column-major binary mask (`h * w` bytes, nonzero = 1) to runs.
    public static func rleEncode(_ mask: UnsafeBufferPointer<UInt8>, h: Int, w: Int) -> RLE {
        precondition(mask.count == h * w, "mask has \(mask.count) pixels, expected \(h) x \(w)")
        var cnts: [UInt32] = []
        var p: UInt8 = 0
        var c: UInt32 = 0
        for j in 0..<(h * w) {
            let v: UInt8 = mask[j] != 0 ? 1 : 0
            if v != p { cnts.append(c); c = 0; p = v }
            c += 1
        }
        cnts.append(c)
        return RLE(h: h, w: w, counts: cnts)
    }

    public static func rleEncode(_ mask: [UInt8], h: Int, w: Int) -> RLE {
        mask.withUnsafeBufferPointer { rleEncode($0, h: h, w: w) }
    }

    /// rleDecode: runs to a column-major `h * w` mask of 0/1 bytes; empty for a size that is not positive or is
    /// beyond `maxPixels`. Runs past the last pixel are cut there.
    public static func rleDecode(_ r: RLE) -> [UInt8] { decode(r) { i, _ in i } }

    /// The mask of `r` row-major (`h` rows of `w` bytes), as images and the detection pipelines hold masks; empty
    /// where `rleDecode` is.
    public static func rleDecodeRowMajor(_ r: RLE) -> [UInt8] { decode(r) { i, r in (i % r.h) * r.w + i / r.h } }

    /// The 1-runs of `r` written as 1s at `position(column-major index)`, cut at the last pixel.
    static func decode(_ r: RLE, position: (Int, RLE) -> Int) -> [UInt8] {
        guard let pixels = pixelCount(h: r.h, w: r.w) else { return [] }
        var m = [UInt8](repeating: 0, count: pixels)
        var k = 0
        var v: UInt8 = 0
        for c in r.counts {
            let n = min(Int(c), pixels - k)
            if v == 1 && n > 0 { for i in k..<(k + n) { m[position(i, r)] = 1 } }
            k += n
            v ^= 1
        }
        return m
    }

    /// rleMerge: union (or intersection) of masks of one size; a size mismatch gives an empty 0x0 RLE as in C.
    public static func rleMerge(_ rs: [RLE], intersect: Bool = false) -> RLE {
        guard let first = rs.first else { return RLE(h: 0, w: 0, counts: []) }
        if rs.count == 1 { return first }
        let h = first.h, w = first.w
        var cnts = first.counts
        for i in 1..<rs.count {
            let B = rs[i]
            if B.h != h || B.w != w { return RLE(h: 0, w: 0, counts: []) }
            let A = cnts
            var out: [UInt32] = []
            out.reserveCapacity(A.count + B.counts.count)
            let kb = B.counts.count
            var ca = A.isEmpty ? 0 : A[0], cb = kb == 0 ? 0 : B.counts[0]
            var v = false, va = false, vb = false
            var a = 1, b = 1
            var cc: UInt32 = 0
            var more = true
            while more {
                // C loops forever once one mask's runs end before the other's (c stays 0): an ended mask is
                // background from there on. Masks of equal length never get here with runs left.
                let aOut = ca == 0 && a >= A.count, bOut = cb == 0 && b >= kb
                let c = aOut ? cb : bOut ? ca : min(ca, cb)
                cc &+= c
                if !aOut {
                    ca &-= c
                    if ca == 0 && a < A.count { ca = A[a]; a += 1; va.toggle() }
                }
                if !bOut {
                    cb &-= c
                    if cb == 0 && b < kb { cb = B.counts[b]; b += 1; vb.toggle() }
                }
                more = ca > 0 || cb > 0
                let vp = v
                let ea = va && !(ca == 0 && a >= A.count), eb = vb && !(cb == 0 && b >= kb)
                v = intersect ? (ea && eb) : (ea || eb)
                if v != vp || !more { out.append(cc); cc = 0 }
            }
            cnts = out
        }
        return RLE(h: h, w: w, counts: cnts)
    }

    /// rleArea: number of 1 pixels.
    public static func rleArea(_ r: RLE) -> UInt32 {
        var a: UInt32 = 0
        var j = 1
        while j < r.counts.count { a &+= r.counts[j]; j += 2 }
        return a
    }

    /// rleToBbox: tight box of the 1 pixels (all zeros for an empty mask). A mask spanning several
    /// columns makes the box full height, as in C.
    public static func rleToBbox(_ r: RLE) -> BBox {
        let h = UInt32(truncatingIfNeeded: r.h), w = UInt32(truncatingIfNeeded: r.w)
        let m = (r.counts.count / 2) * 2
        if m == 0 || h == 0 { return BBox(x: 0, y: 0, w: 0, h: 0) }
        var xs = w, ys = h, xe: UInt32 = 0, ye: UInt32 = 0, cc: UInt32 = 0, xp: UInt32 = 0
        for j in 0..<m {
            cc &+= r.counts[j]
            let t = cc &- UInt32(j % 2)
            let y = t % h
            let x = (t &- y) / h
            if j % 2 == 0 { xp = x } else if xp < x { ys = 0; ye = h &- 1 }
            xs = min(xs, x); xe = max(xe, x); ys = min(ys, y); ye = max(ye, y)
        }
        return BBox(x: Double(xs), y: Double(ys), w: Double(xe &- xs &+ 1), h: Double(ye &- ys &+ 1))
    }

    /// bbIou: `o[d * gt.count + g]` = IoU of dt[d] and gt[g]; for a crowd gt the union is the dt area.
    public static func bbIou(_ dt: [BBox], _ gt: [BBox], iscrowd: [Bool]?) -> [Double] {
        var o = [Double](repeating: 0, count: dt.count * gt.count)
        let n = gt.count
        for g in 0..<n {
            let G = gt[g]
            let ga = G.w * G.h
            let crowd = iscrowd?[g] ?? false
            for d in 0..<dt.count {
                let D = dt[d]
                let da = D.w * D.h
                let w = Swift.min(D.w + D.x, G.w + G.x) - Swift.max(D.x, G.x)
                if w <= 0 { continue }
                let h = Swift.min(D.h + D.y, G.h + G.y) - Swift.max(D.y, G.y)
                if h <= 0 { continue }
                let i = w * h
                let u = crowd ? da : da + ga - i
                o[d * n + g] = i / u
            }
        }
        return o
    }

    /// rleIou: `o[d * gt.count + g]`; boxes first (0 when they do not overlap), -1 for a size mismatch,
    /// crowd gt: intersection over the dt area.
    public static func rleIou(_ dt: [RLE], _ gt: [RLE], iscrowd: [Bool]?) -> [Double] {
        let db = dt.map(rleToBbox), gb = gt.map(rleToBbox)
        var o = bbIou(db, gb, iscrowd: iscrowd)
        let n = gt.count
        for g in 0..<n {
            for d in 0..<dt.count where o[d * n + g] > 0 {
                let crowd = iscrowd?[g] ?? false
                if dt[d].h != gt[g].h || dt[d].w != gt[g].w { o[d * n + g] = -1; continue }
                o[d * n + g] = rleIntersectionOverUnion(dt[d], gt[g], crowd: crowd)
            }
        }
        return o
    }

    /// The run-merging core of rleIou for one pair.
    @inline(__always)
    static func rleIntersectionOverUnion(_ A: RLE, _ B: RLE, crowd: Bool) -> Double {
        A.counts.withUnsafeBufferPointer { ac in
            B.counts.withUnsafeBufferPointer { bc in
                let ka = ac.count, kb = bc.count
                var ca = ka > 0 ? ac[0] : 0, cb = kb > 0 ? bc[0] : 0
                var va = false, vb = false
                var a = 1, b = 1
                var i: UInt32 = 0, u: UInt32 = 0
                var more = true
                while more {
                    // As in rleMerge: C loops forever when one mask's runs end first (a short RLE kept with a
                    // warning); the ended mask is background for the rest.
                    let aOut = ca == 0 && a >= ka, bOut = cb == 0 && b >= kb
                    let c = aOut ? cb : bOut ? ca : min(ca, cb)
                    let ea = va && !aOut, eb = vb && !bOut
                    if ea || eb { u &+= c; if ea && eb { i &+= c } }
                    if !aOut {
                        ca &-= c
                        if ca == 0 && a < ka { ca = ac[a]; a += 1; va.toggle() }
                    }
                    if !bOut {
                        cb &-= c
                        if cb == 0 && b < kb { cb = bc[b]; b += 1; vb.toggle() }
                    }
                    more = ca > 0 || cb > 0
                }
                if i == 0 { u = 1 } else if crowd { u = rleArea(A) }
                return Double(i) / Double(u)
            }
        }
    }

    /// rleFrBbox: the box as the polygon (xs,ys),(xs,ye),(xe,ye),(xe,ys), rasterised by rleFrPoly. Corners are
    /// first clipped to one pixel outside the image: for an axis-aligned box that changes no pixel (the rasteriser
    /// keeps only crossings inside the image and clamps rows), and a box of any size costs at most the image's
    /// perimeter.
    public static func rleFrBbox(_ bb: BBox, h: Int, w: Int) -> RLE {
        func clip(_ v: Double, _ side: Int) -> Double { v.isNaN ? -1 : Swift.min(Swift.max(v, -1), Double(side) + 1) }
        let xs = clip(bb.x, w), xe = clip(bb.x + bb.w, w), ys = clip(bb.y, h), ye = clip(bb.y + bb.h, h)
        return rleFrPoly([xs, ys, xs, ye, xe, ye, xe, ys], h: h, w: w)
    }

    public static func rleFrPoly(_ xy: [Double], h: Int, w: Int) -> RLE {
        xy.withUnsafeBufferPointer { rleFrPoly($0, h: h, w: w) }
    }

    /// rleFrPoly: rasterises a polygon `[x0, y0, x1, y1, ...]` the way pycocotools does — boundary
    /// points on a 5x upsampled grid, then pixel-column crossings rounded back down. The size must be valid
    /// (`pixelCount`) and every coordinate finite and within one image size (plus a pixel) outside the image, as
    /// the loaders check; otherwise the mask is empty. The walk along the edges is streamed: memory grows with the
    /// column crossings kept, not with the edges' length.
    public static func rleFrPoly(_ xy: UnsafeBufferPointer<Double>, h: Int, w: Int) -> RLE {
        guard let pixels = pixelCount(h: h, w: w) else { return RLE(h: h, w: w, counts: []) }
        let k = xy.count / 2
        let W = Double(w), H = Double(h)
        for j in 0..<k {
            let px = xy[j * 2], py = xy[j * 2 + 1]
            guard px.isFinite, py.isFinite, px >= -(W + 1), px <= 2 * W + 1, py >= -(H + 1), py <= 2 * H + 1 else {
                return RLE(h: h, w: w, counts: [UInt32(pixels)])
            }
        }
        let scale = 5.0
        var x = [Int](repeating: 0, count: k + 1), y = [Int](repeating: 0, count: k + 1)
        for j in 0..<k { x[j] = Int(scale * xy[j * 2] + 0.5) }
        for j in 0..<k { y[j] = Int(scale * xy[j * 2 + 1] + 0.5) }
        if k > 0 { x[k] = x[0]; y[k] = y[0] }
        // Points along the y-boundary, downsampled, from each step of the walk (u, v) and the one before it.
        var bx: [Int] = [], by: [Int] = []
        let wMax = Double(w) - 1, hD = Double(h)
        var pu = 0, pv = 0, started = false
        @inline(__always) func step(_ u: Int, _ v: Int) {
            defer { pu = u; pv = v; started = true }
            guard started, u != pu else { return }
            var xd = Double(u < pu ? u : u - 1)
            xd = (xd + 0.5) / scale - 0.5
            if xd.rounded(.down) != xd || xd < 0 || xd > wMax { return }
            var yd = Double(v < pv ? v : pv)
            yd = (yd + 0.5) / scale - 0.5
            if yd < 0 { yd = 0 } else if yd > hD { yd = hD }
            yd = yd.rounded(.up)
            bx.append(Int(xd)); by.append(Int(yd))
        }
        for j in 0..<k {
            var xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1]
            let dx = abs(xe - xs), dy = abs(ys - ye)
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye)
            if flip { swap(&xs, &xe); swap(&ys, &ye) }
            // C divides 0/0 for a repeated vertex; that point's v is never read, so 0 is as good.
            let s: Double = dx >= dy ? (dx == 0 ? 0 : Double(ye - ys) / Double(dx)) : Double(xe - xs) / Double(dy)
            if dx >= dy {
                for d in 0...dx {
                    let t = flip ? dx - d : d
                    step(t + xs, Int(Double(ys) + s * Double(t) + 0.5))
                }
            } else {
                for d in 0...dy {
                    let t = flip ? dy - d : d
                    step(Int(Double(xs) + s * Double(t) + 0.5), t + ys)
                }
            }
        }
        // Runs from the boundary points.
        var a = [UInt32](repeating: 0, count: bx.count + 1)
        // Exact: bx < w and by <= h, so bx * h + by <= h * w <= maxPixels < 2^32.
        for j in 0..<bx.count { a[j] = UInt32(truncatingIfNeeded: bx[j] * h + by[j]) }
        a[bx.count] = UInt32(pixels)
        a.sort()
        var p: UInt32 = 0
        for j in 0..<a.count { let t = a[j]; a[j] = t &- p; p = t }
        var b: [UInt32] = []
        b.reserveCapacity(a.count)
        var j = 0
        b.append(a[j]); j += 1
        while j < a.count {
            if a[j] > 0 {
                b.append(a[j]); j += 1
            } else {
                j += 1
                if j < a.count { b[b.count - 1] &+= a[j]; j += 1 }
            }
        }
        return RLE(h: h, w: w, counts: b)
    }

    /// rleToString: LEB128-like, 6 bits per char in ASCII 48...111, counts from the third on stored as
    /// the difference to the count two before (C's `i>2`, kept as is).
    public static func rleToString(_ r: RLE) -> String {
        var s: [UInt8] = []
        s.reserveCapacity(r.counts.count * 2)
        for i in 0..<r.counts.count {
            var x = Int64(r.counts[i])
            if i > 2 { x -= Int64(r.counts[i - 2]) }
            var more = true
            while more {
                var c = UInt8(truncatingIfNeeded: x & 0x1f)
                x >>= 5
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                s.append(c + 48)
            }
        }
        return String(decoding: s, as: UTF8.self)
    }

    /// rleFrString: inverse of rleToString; nil when a character is outside 48...111, the string ends inside a
    /// count (C reads garbage there) or a count falls outside 0..<2^32 (C wraps it).
    public static func rleFrString<S: Collection>(_ bytes: S, h: Int, w: Int) -> RLE? where S.Element == UInt8 {
        var cnts: [UInt32] = []
        cnts.reserveCapacity(bytes.count)
        var it = bytes.makeIterator()
        var pending = it.next()
        while let first = pending {
            var x: Int64 = 0
            var k = 0
            var more = true
            var ch: UInt8? = first
            while more {
                guard let cu = ch, cu >= 48, cu <= 111 else { return nil }
                let c = Int64(cu - 48)
                if k < 13 { x |= (c & 0x1f) << Int64(5 * k) }
                more = (c & 0x20) != 0
                k += 1
                if !more && (c & 0x10) != 0 && k < 13 { x |= -1 << Int64(5 * k) }
                ch = more ? it.next() : nil
            }
            if cnts.count > 2 { x += Int64(cnts[cnts.count - 2]) }
            // pycocotools' encoder only writes counts in 0..<2^32; C would wrap anything else into some count.
            guard let count = UInt32(exactly: x) else { return nil }
            cnts.append(count)
            pending = it.next()
        }
        return RLE(h: h, w: w, counts: cnts)
    }

    public static func rleFrString(_ s: String, h: Int, w: Int) -> RLE? {
        rleFrString(Array(s.utf8), h: h, w: w)
    }
}

extension RLE {
    public var area: Int { Int(MaskAPI.rleArea(self)) }
    public func toBbox() -> BBox { MaskAPI.rleToBbox(self) }
    /// pycocotools' compressed `counts` string.
    public func toString() -> String { MaskAPI.rleToString(self) }
    public func decode() -> [UInt8] { MaskAPI.rleDecode(self) }
    /// Sum of all runs; a well-formed RLE covers exactly `h * w` pixels.
    public var pixelCount: Int { counts.reduce(0) { $0 + Int($1) } }
}
