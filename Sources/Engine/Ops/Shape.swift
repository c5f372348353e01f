/// Layout ops: reshape (a view), permute, concat, slice (with step), constant and reflection padding, roll, gather.

extension Tensor {
    /// A view with a new shape (one dim may be -1); shares storage.
    public func reshape(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        if s == shape { return self }
        let inShape = shape
        return Tensor(shape: s, storage: storage).record("reshape", [self]) { g in [g.reshape(inShape)] }
    }

    public func flatten(from start: Int = 1) -> Tensor {
        reshape(Array(shape[..<start]) + [shape[start...].reduce(1, *)])
    }

    /// Reorders dims: output dim i is input dim `order[i]`.
    public func permute(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permute \(order) of rank \(rank)")
        if order == Array(0..<rank) { return self }
        let out = permuteCopy(order)
        var inverse = order
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.record("permute", [self]) { g in [g.permuteCopy(inverse)] }
    }

    public func transpose(_ a: Int, _ b: Int) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(normalizedAxis(a), normalizedAxis(b))
        return permute(order)
    }

    func permuteCopy(_ order: [Int]) -> Tensor {
        let outShape = order.map { shape[$0] }
        let inStrides = contiguousStrides(shape)
        // Output dims with the input stride each walks, merged where consecutive in both.
        var dims: [Int] = [], strides: [Int] = []
        for i in 0..<rank where outShape[i] != 1 {
            let st = inStrides[order[i]]
            if let l = dims.indices.last, strides[l] == st * outShape[i] {
                dims[l] *= outShape[i]; strides[l] = st
            } else { dims.append(outShape[i]); strides.append(st) }
        }
        let out = Tensor(uninitialized: outShape)
        if dims.count <= 1 { out.data.update(from: data, count: count); return out }
        let n = dims.count
        if strides[n - 2] == 1 && strides[n - 1] == dims[n - 2] {
            transposeBlocks(out, dims: dims, strides: strides)
            return out
        }
        let inner = dims.last!, si = strides.last!
        let od = Array(dims.dropLast()), os = Array(strides.dropLast())
        let x = data, y = out.data
        parallelChunks(count / inner, cost: inner) { s, e in
            for o in s..<e {
                let yo = y + o * inner, xo = x + stridedOffset(o, dims: od, strides: os)
                if si == 1 { yo.update(from: xo, count: inner) } else { for i in 0..<inner { yo[i] = xo[i * si] } }
            }
        }
        return out
    }

    /// The input offset of row-major index `index` over `dims`, each dim walking its input stride.
    private func stridedOffset(_ index: Int, dims: [Int], strides: [Int]) -> Int {
        var rem = index, off = 0
        for d in stride(from: dims.count - 1, through: 0, by: -1) {
            off += (rem % dims[d]) * strides[d]; rem /= dims[d]
        }
        return off
    }

    /// The permutes whose last two merged dims transpose a contiguous block (NCHW → NHWC, [N, C, L] → [N, L, C]): the
    /// general path reads each output row's elements a whole block apart, a cache miss apiece (RetinaNet's
    /// [1, 720, 100, 168] class scores: 19–20 ms single-threaded). Here bands of 32 output rows go through
    /// `transposeBlock`, 4×4 blocks in registers while their source lines are in cache.
    private func transposeBlocks(_ out: Tensor, dims: [Int], strides: [Int]) {
        let n = dims.count, rows = dims[n - 2], cols = dims[n - 1], tile = 32
        let od = Array(dims.prefix(n - 2)), os = Array(strides.prefix(n - 2))
        let rowTiles = (rows + tile - 1) / tile, blocks = count / (rows * cols)
        let x = data, y = out.data
        parallelChunks(blocks * rowTiles, cost: tile * cols) { s, e in
            for t in s..<e {
                let b = t / rowTiles, r0 = t % rowTiles * tile, r1 = Swift.min(rows, r0 + tile)
                let off = stridedOffset(b, dims: od, strides: os)
                // Output block b is [rows][cols]; its input is [cols][rows] from x + off. Output rows r0..<r1 are
                // input columns r0..<r1 of every input row.
                transposeBlock(x + off + r0, rows: cols, cols: r1 - r0, srcStride: rows, into: y + (b * rows + r0) * cols, dstStride: cols)
            }
        }
    }

    /// Elements start..<end (step `step`) along `axis`.
    public func slice(axis: Int, start: Int, end: Int, step: Int = 1) -> Tensor {
        let a = normalizedAxis(axis)
        precondition(start >= 0 && end <= shape[a] && start <= end && step >= 1, "slice \(start)..<\(end) of dim \(shape[a])")
        let (outer, r, inner) = split(at: a)
        let n = (end - start + step - 1) / step
        var s = shape; s[a] = n
        let out = Tensor(uninitialized: s)
        let x = data, y = out.data
        parallelFor(outer, cost: n * inner) { o in
            for j in 0..<n { (y + (o * n + j) * inner).update(from: x + (o * r + start + j * step) * inner, count: inner) }
        }
        let inShape = shape
        return out.record("slice", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            parallelFor(outer, cost: n * inner) { o in
                for j in 0..<n { (gxd + (o * r + start + j * step) * inner).update(from: gd + (o * n + j) * inner, count: inner) }
            }
            return [gx]
        }
    }

    /// Zero-based gather along `axis` (PyTorch's index_select); the backward scatter-adds.
    public func indexSelect(axis: Int, _ indices: [Int]) -> Tensor {
        let a = normalizedAxis(axis)
        let (outer, r, inner) = split(at: a)
        precondition(indices.allSatisfy { $0 >= 0 && $0 < r }, "indexSelect: index out of range 0..<\(r)")
        let n = indices.count
        var s = shape; s[a] = n
        let out = Tensor(uninitialized: s)
        let x = data, y = out.data
        // One task per selected slice (RoI features reordered along axis 0 have outer = 1).
        parallelFor(outer * n, cost: inner) { t in
            let (o, j) = t.quotientAndRemainder(dividingBy: n)
            (y + t * inner).update(from: x + (o * r + indices[j]) * inner, count: inner)
        }
        let inShape = shape
        // Distinct indices (a permutation, a subset) scatter to distinct slices: one task per slice. Repeated ones
        // add into the same slice, in index order within each outer slice.
        let distinct = Set(indices).count == n
        return out.record("index_select", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            if distinct {
                parallelFor(outer * n, cost: inner) { t in
                    let (o, j) = t.quotientAndRemainder(dividingBy: n)
                    let src = gd + t * inner, dst = gxd + (o * r + indices[j]) * inner
                    for i in 0..<inner { dst[i] += src[i] }
                }
            } else {
                parallelFor(outer, cost: n * inner) { o in
                    for (j, idx) in indices.enumerated() {
                        let src = gd + (o * n + j) * inner, dst = gxd + (o * r + idx) * inner
                        for i in 0..<inner { dst[i] += src[i] }
                    }
                }
            }
            return [gx]
        }
    }

    /// Cyclic shift along axes (torch.roll): element i moves to (i + shift) mod size.
    public func roll(shifts: [Int], axes: [Int]) -> Tensor {
        var out = self
        for (s, ax) in zip(shifts, axes) {
            let a = normalizedAxis(ax), n = shape[a]
            let k = ((s % n) + n) % n
            if k == 0 { continue }
            out = concat([out.slice(axis: a, start: n - k, end: n), out.slice(axis: a, start: 0, end: n - k)], axis: a)
        }
        return out
    }

    /// Constant padding: `pads[d] = (before, after)` for each dim d (missing trailing entries mean no padding).
    public func pad(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        var p = pads
        while p.count < rank { p.append((0, 0)) }
        if p.allSatisfy({ $0 == (0, 0) }) { return self }
        let outShape = (0..<rank).map { shape[$0] + p[$0].0 + p[$0].1 }
        let out = Tensor(zeros: outShape, value: value)
        copyBlock(from: self, into: out, offsets: p.map(\.0))
        let inShape = shape
        return out.record("pad", [self]) { g in
            var gx = g
            for d in 0..<inShape.count where p[d] != (0, 0) {
                gx = gx.slice(axis: d, start: p[d].0, end: p[d].0 + inShape[d])
            }
            return [gx]
        }
    }

    /// Reflection padding of the last two dims (NCHW), PyTorch's ReflectionPad2d: (left, right, top, bottom).
    public func reflectionPad2d(left: Int, right: Int, top: Int, bottom: Int) -> Tensor {
        let h = shape[rank - 2], w = shape[rank - 1]
        precondition(left < w && right < w && top < h && bottom < h,
                     "reflection padding (\(left),\(right),\(top),\(bottom)) needs a map larger than the padding, got \(h)x\(w)")
        let ho = h + top + bottom, wo = w + left + right
        let planes = count / (h * w)
        let out = Tensor(uninitialized: Array(shape.dropLast(2)) + [ho, wo])
        // Source index of padded index i: reflect around the first and last elements without repeating them.
        let rowMap = (0..<ho).map { reflectIndex($0 - top, h) }
        let colMap = (0..<wo).map { reflectIndex($0 - left, w) }
        let x = data, y = out.data
        parallelFor(planes, cost: ho * wo) { p in
            for i in 0..<ho {
                let src = x + p * h * w + rowMap[i] * w, dst = y + p * ho * wo + i * wo
                for j in 0..<wo { dst[j] = src[colMap[j]] }
            }
        }
        let inShape = shape
        return out.record("reflection_pad2d", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            parallelFor(planes, cost: ho * wo) { p in
                for i in 0..<ho {
                    let src = gd + p * ho * wo + i * wo, dst = gxd + p * h * w + rowMap[i] * w
                    for j in 0..<wo { dst[colMap[j]] += src[j] }
                }
            }
            return [gx]
        }
    }
}

@inline(__always)
func reflectIndex(_ i: Int, _ n: Int) -> Int {
    if n == 1 { return 0 }
    var j = i
    let period = 2 * (n - 1)
    j = ((j % period) + period) % period
    return j < n ? j : period - j
}

/// Copies `src` into `dst` at per-dim `offsets` (dst dims ≥ src dims).
func copyBlock(from src: Tensor, into dst: Tensor, offsets: [Int]) {
    let r = src.rank
    let inner = src.shape[r - 1]
    let rows = src.count / max(inner, 1)
    let dstStrides = contiguousStrides(dst.shape)
    let x = src.data, y = dst.data
    let outerDims = Array(src.shape.dropLast())
    parallelFor(rows, cost: inner) { row in
        var rem = row, off = offsets[r - 1]
        for d in stride(from: r - 2, through: 0, by: -1) {
            off += (rem % outerDims[d] + offsets[d]) * dstStrides[d]; rem /= outerDims[d]
        }
        (y + off).update(from: x + row * inner, count: inner)
    }
}

/// Joins tensors along `axis`; all other dims must agree.
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat of no tensors")
    let first = tensors[0]
    let a = first.normalizedAxis(axis)
    for t in tensors {
        precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == first.shape[$0] },
                     "concat along \(a): \(t.shape) vs \(first.shape)")
    }
    var s = first.shape
    s[a] = tensors.reduce(0) { $0 + $1.shape[a] }
    let out = Tensor(uninitialized: s)
    let outer = s[..<a].reduce(1, *), inner = s[(a + 1)...].reduce(1, *)
    var start = 0
    var starts: [Int] = []
    for t in tensors {
        starts.append(start)
        let n = t.shape[a], x = t.data, y = out.data, st = start
        parallelFor(outer, cost: n * inner) { o in
            (y + (o * s[a] + st) * inner).update(from: x + o * n * inner, count: n * inner)
        }
        start += n
    }
    let parts = tensors.map { ($0.requiresGrad, $0.shape[a]) }   // not the tensors: the backward needs no values
    return out.record("concat", tensors) { g in
        zip(parts, starts).map { p, st in p.0 ? g.slice(axis: a, start: st, end: st + p.1) : nil }
    }
}
