/// pycocotools' `Params` for bbox/segm evaluation, with the same field names and defaults.
public struct Params: Sendable {
    public enum IouType: String, Sendable { case bbox, segm }

    public var imgIds: [Int] = []
    public var catIds: [Int] = []
    /// numpy.linspace(.5, 0.95, 10): 0.9 is 0.8999999999999999, which decides matches at IoU 0.9.
    public var iouThrs: [Double] = Params.linspace(0.5, 0.95, 10)
    /// numpy.linspace(0, 1, 101): 0.35 is 0.35000000000000003, which decides recall k/100.
    public var recThrs: [Double] = Params.linspace(0.0, 1.0, 101)
    public var maxDets: [Int] = [1, 10, 100]
    /// Closed ranges [lo, hi] on the `area` field.
    public var areaRng: [[Double]] = [[0, 1e10], [0, 1024], [1024, 9216], [9216, 1e10]]
    public var areaRngLbl: [String] = ["all", "small", "medium", "large"]
    public var useCats = true
    public var iouType: IouType

    public init(iouType: IouType = .segm) {
        self.iouType = iouType
    }

    /// numpy.linspace(start, stop, num) to the bit: `i * step + start` with `step = (stop - start) / (num - 1)`,
    /// the last value set to `stop`.
    public static func linspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
        if num <= 0 { return [] }
        if num == 1 { return [start] }
        let div = Double(num - 1)
        let delta = stop - start
        let step = delta / div
        var y = (0..<num).map { step == 0 ? Double($0) / div * delta : Double($0) * step }
        for i in 0..<num { y[i] += start }
        y[num - 1] = stop
        return y
    }
}
