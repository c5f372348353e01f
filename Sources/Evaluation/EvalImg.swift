/// One image/category/area-range result of `evaluateImg`, as pycocotools' dict. Matrices are T x D
/// (or T x G) row-major, t the IoU threshold index.
public final class EvalImg: @unchecked Sendable {
    public let imageId: Int
    public let categoryId: Int
    public let aRng: [Double]
    public let maxDet: Int
    public let dtIds: [Int]
    public let gtIds: [Int]
    /// Matched gt id per threshold and detection, 0 = unmatched.
    public let dtMatches: [Int]
    /// Matched dt id per threshold and gt, 0 = unmatched.
    public let gtMatches: [Int]
    public let dtScores: [Double]
    public let gtIgnore: [Bool]
    public let dtIgnore: [Bool]

    init(imageId: Int, categoryId: Int, aRng: [Double], maxDet: Int, dtIds: [Int], gtIds: [Int],
         dtMatches: [Int], gtMatches: [Int], dtScores: [Double], gtIgnore: [Bool], dtIgnore: [Bool]) {
        self.imageId = imageId
        self.categoryId = categoryId
        self.aRng = aRng
        self.maxDet = maxDet
        self.dtIds = dtIds
        self.gtIds = gtIds
        self.dtMatches = dtMatches
        self.gtMatches = gtMatches
        self.dtScores = dtScores
        self.gtIgnore = gtIgnore
        self.dtIgnore = dtIgnore
    }
}
