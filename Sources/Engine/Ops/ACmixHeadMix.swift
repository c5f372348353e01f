/// ACmix's `fc` on the NCHW q | k | v projections, written in the layout its shift convolution reads: x [B, G, D, P]
/// (G = 3·heads groups of D = head_dim channels over P positions), weight [K, G, 1, 1] → [B, D·K, P] viewed as
/// [B, D, K, P], y[b, d, k, p] = Σ_g w[k, g]·x[b, g, d, p]: PyTorch's fc(x).permute(0, 2, 1, 3) without the permuted
/// copy (the copy and its fresh pages were 4–5 % of ACmix-ResNet-50 RetinaNet inference at 800×1333, Zen 4). One GEMM
/// per (image, channel), float32 in every precision as the 1×1 convolution it replaces (its 3·heads inputs per output
/// are too few for bf16, `takesBF16`).
public func acmixHeadMix(_ x: Tensor, _ weight: Tensor) -> Tensor {
    precondition(x.shape.count == 4 && weight.shape.count == 4 && weight.shape[1] == x.shape[1]
                 && weight.shape[2] == 1 && weight.shape[3] == 1, "acmixHeadMix: x \(x.shape), weight \(weight.shape)")
    let (b, g, d, p) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), k = weight.shape[0]
    FlopCounter.add("conv", b * d * p * g * k, weight: weight)
    let y = Tensor(uninitialized: [b, d, k, p])
    let xd = UnsafePointer(x.data), wd = UnsafePointer(weight.data), yd = y.data
    MixedPrecision.float32 {
        parallelFor(b * d, cost: k * g * p) { i in serially {
            let bi = i / d, di = i % d
            sgemm(m: k, n: p, k: g, a: wd, lda: g, b: xd + (bi * g * d + di) * p, ldb: d * p, c: yd + i * k * p, ldc: p)
        } }
    }
    return y.record("acmix_head_mix", [x, weight]) { gy in
        let gyd = UnsafePointer(gy.data)
        var gx: Tensor? = nil, gw: Tensor? = nil
        MixedPrecision.float32 {
            if x.requiresGrad {
                let t = Tensor(uninitialized: x.shape), td = t.data
                parallelFor(b * d, cost: k * g * p) { i in serially {
                    let bi = i / d, di = i % d
                    sgemm(transA: true, m: g, n: p, k: k, a: wd, lda: g, b: gyd + i * k * p, ldb: p,
                          c: td + (bi * g * d + di) * p, ldc: d * p)
                } }
                gx = t
            }
            if weight.requiresGrad {
                // Per image, its channels summed in order; then the images in order (the same sums at any thread count).
                let partial = Tensor(uninitialized: [b, k, g]), pd = partial.data
                parallelFor(b, cost: d * k * g * p) { bi in serially {
                    for di in 0..<d {
                        sgemm(transB: true, m: k, n: g, k: p, a: gyd + (bi * d + di) * k * p, lda: p,
                              b: xd + (bi * g * d + di) * p, ldb: d * p, beta: di == 0 ? 0 : 1, c: pd + bi * k * g, ldc: g)
                    }
                } }
                let t = Tensor(zeros: weight.shape), td = t.data
                for bi in 0..<b { for j in 0..<k * g { td[j] += pd[bi * k * g + j] } }
                gw = t
            }
        }
        return [gx, gw]
    }
}
