/// evaluateImg for every area range of one image/category pair, stored together (area-range-major)
/// so a val2017-sized evaluation makes a few hundred thousand allocations, not millions.
final class PairEval: @unchecked Sendable {
    let imageId: Int
    let categoryId: Int
    let maxDet: Int
    let A: Int, T: Int, D: Int, G: Int
    let dtIds: [Int]
    let dtScores: [Double]
    /// [A][G]: gt in each area range's order (ignored last).
    let gtIds: [Int]
    let gtIgnore: [Bool]
    /// [A][T][G]
    let gtMatches: [Int]
    /// [A][T][D]
    let dtMatches: [Int]
    let dtIgnore: [Bool]

    init(imageId: Int, categoryId: Int, maxDet: Int, A: Int, T: Int, G: Int, dtIds: [Int], dtScores: [Double],
         gtIds: [Int], gtIgnore: [Bool], gtMatches: [Int], dtMatches: [Int], dtIgnore: [Bool]) {
        self.imageId = imageId
        self.categoryId = categoryId
        self.maxDet = maxDet
        self.A = A
        self.T = T
        self.D = dtIds.count
        self.G = G
        self.dtIds = dtIds
        self.dtScores = dtScores
        self.gtIds = gtIds
        self.gtIgnore = gtIgnore
        self.gtMatches = gtMatches
        self.dtMatches = dtMatches
        self.dtIgnore = dtIgnore
    }

    func evalImg(areaIndex a: Int, aRng: [Double]) -> EvalImg {
        EvalImg(imageId: imageId, categoryId: categoryId, aRng: aRng, maxDet: maxDet, dtIds: dtIds,
                gtIds: Array(gtIds[(a * G)..<((a + 1) * G)]),
                dtMatches: Array(dtMatches[(a * T * D)..<((a + 1) * T * D)]),
                gtMatches: Array(gtMatches[(a * T * G)..<((a + 1) * T * G)]),
                dtScores: dtScores, gtIgnore: Array(gtIgnore[(a * G)..<((a + 1) * G)]),
                dtIgnore: Array(dtIgnore[(a * T * D)..<((a + 1) * T * D)]))
    }
}
