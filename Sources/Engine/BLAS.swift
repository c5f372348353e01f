import CBLAS
import Dispatch

/// Row-major C = alpha·op(A)·op(B) + beta·C through OpenBLAS; op(X) is X or Xᵀ.
/// A is M×K after op, B is K×N after op; lda/ldb/ldc are the row strides of the stored matrices.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    // `rows` × `cols` of C from the matching panels of op(A) and op(B).
    func call(_ rows: Int, _ cols: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(rows), Int32(cols), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    let threads = Threads.count
    guard threads > 1 && m * n * k >= 1 << 20 && max(m, n) >= 32 * threads else { return call(m, n, a, b, c) }
    // One single-threaded OpenBLAS call per thread on a block of C's columns (or rows, when C is tall), in
    // multiples of 16 so every block keeps whole SIMD panels (see `Threads` for why OpenBLAS does not thread).
    let alongN = n >= m, extent = alongN ? n : m
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        let lo = extent * t / threads / 16 * 16, hi = t == threads - 1 ? extent : extent * (t + 1) / threads / 16 * 16
        guard hi > lo else { return }
        if alongN { call(m, hi - lo, a, b + (transB ? lo * ldb : lo), c + lo) }
        else { call(hi - lo, n, a + (transA ? lo : lo * lda), b, c + lo * ldc) }
    }
}
