/// One image/category/area-range result of `evaluateImg`, as pycocotools' dict. Matrices are T x D
/// (or T x G) row-major, t the IoU threshold index.
public struct EvalImg: Sendable {
    public var imageId: Int
    public var categoryId: Int
    public var aRng: [Double]
    public var maxDet: Int
    public var dtIds: [Int]
    public var gtIds: [Int]
    /// Matched gt id per threshold and detection, 0 = unmatched.
    public var dtMatches: [Int]
    /// Matched dt id per threshold and gt, 0 = unmatched.
    public var gtMatches: [Int]
    public var dtScores: [Double]
    public var gtIgnore: [Bool]
    public var dtIgnore: [Bool]
}
