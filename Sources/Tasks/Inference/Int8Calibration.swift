import Data
import Engine
import Foundation
import NN

/// How a quantized convolution's input scale is set from the values calibration saw: the largest magnitude, or the
/// 99.99th percentile of the magnitudes (clipping rare outliers for finer steps everywhere else).
public enum ActivationScaleMethod: String, CaseIterable, Sendable {
    case minmax
    case percentile = "percentile_99.99"
}

/// What calibration found, for the tool to print and the quantized file to record.
public struct Int8CalibrationReport: Sendable {
    public var images: Int
    /// Quantized convolutions, by parameter name (without ".weight").
    public var quantized: [String]
    /// Convolutions kept in float32 and why.
    public var kept: [(name: String, reason: String)]
    /// Relative RMS error of the model's outputs against float32 on the calibration images, per method.
    public var errors: [(method: ActivationScaleMethod, error: Double)]
    public var chosen: ActivationScaleMethod
    /// The convolutions whose outputs the errors compare.
    public var compared: [String]
}

/// Post-training static int8 calibration (OpenVINO NNCF's / PyTorch's `prepare` + `convert`, for convolutions and
/// linear layers): the model runs float32 on the calibration images while every one's inputs are observed, each candidate method
/// sets the input scales, and the method whose int8 model's outputs differ least from float32's on the same images
/// is kept. Weights are quantized per output channel (`QuantizedConv.quantize`).
///
/// Kept in float32: the first convolution (the stem, whose 3-channel input gains nothing and loses most), the heads'
/// final classification / regression / mask-logit / segmentation convolutions and linear layers (mmdet's and
/// OpenVINO's usual exclusions), grouped convolutions (ACmix's shift convolution), tiny layers (`tinySize`: ACmix's
/// `fc`), and everything else: ACmix's and
/// Swin's attention (its q·k and attention·v products and softmax), deconvolutions, norms, box and mask
/// post-processing.
public enum Int8Calibration {
    /// "a→b" for a convolution or linear layer with dot products under 32 terms and under 32 outputs per position, nil
    /// for others. Such a layer stays in floating point: the int8 kernels gain nothing on it, and quantizing and
    /// reordering its input costs more. ACmix's `fc` (3·heads → k² per position) is one: at 800×1333, ACmix-ResNet-50
    /// stage 1's took 253 ms at int8 against 75 ms in bf16 (Zen 4).
    static func tinySize(_ weight: Tensor) -> String? {
        let o = weight.shape[0], k = weight.count / max(o, 1)
        return k < 32 && o < 32 ? "\(k)→\(o)" : nil
    }

    /// Last name components of the heads' final prediction layers.
    static let finalLayers: Set<String> = ["retina_cls", "retina_reg", "rpn_cls", "rpn_reg", "conv_cls", "conv_reg",
                                           "fc_cls", "fc_reg", "conv_logits", "conv_seg"]

    /// Calibrates `model` on `count` inputs: `forward(i)` runs input i through the model (for images: the test
    /// pipeline and the model, outputs discarded). `progress(done, total)` counts forward passes.
    public static func calibrate(model: Module, count: Int, forward: (Int) throws -> Void,
                                 progress: (Int, Int) -> Void = { _, _ in }) throws -> (Int8Model, Int8CalibrationReport) {
        precondition(count > 0, "calibration needs images")
        let saved = (MixedPrecision.inference, Int8Inference.model, Int8Inference.observer)
        defer {
            try? MixedPrecision.select(saved.0)
            Int8Inference.model = saved.1
            Int8Inference.observer = saved.2
        }
        try MixedPrecision.select(.fp32)
        var names: [UnsafeMutablePointer<Float>: (String, Tensor)] = [:]
        for (name, t) in model.namedTensors() where (t.shape.count == 4 || t.shape.count == 2) && name.hasSuffix(".weight") {
            names[t.data] = (String(name.dropLast(".weight".count)), t)
        }
        let totalPasses = count * (2 + ActivationScaleMethod.allCases.count)
        var passes = 0
        func step() { passes += 1; progress(passes, totalPasses) }

        // 1. Statistics of every convolution's input, float32.
        let stats = StatisticsObserver()
        Int8Inference.observer = stats
        for i in 0..<count {
            try forward(i)
            step()
        }
        var quantized: [UnsafeMutablePointer<Float>] = [], kept: [(String, String)] = [], finals: [UnsafeMutablePointer<Float>] = []
        let first = stats.order.first { names[$0] != nil }
        for w in stats.order {
            guard let (name, _) = names[w] else { continue }   // not a parameter of this model
            let s = stats.layers[w]!
            let last = String(name.split(separator: ".").last ?? "")
            if w == first { kept.append((name, "first convolution")) }
            else if finalLayers.contains(last) || name == "fc" || name == "head" {   // fc / head: a classifier's own
                kept.append((name, "final prediction layer"))
                if !name.contains("roi_head") { finals.append(w) }
            } else if s.grouped { kept.append((name, "grouped convolution")) }
            else if let size = tinySize(names[w]!.1) { kept.append((name, "tiny (\(size))")) }
            else { quantized.append(w) }
        }
        // The outputs compared: the dense heads' final layers (RoI heads' inputs depend on the proposals, which differ
        // between the two runs); a model without them (a backbone) is compared at its last convolution.
        let compared = finals.isEmpty ? Array(stats.order.suffix(1)) : finals
        func build(_ method: ActivationScaleMethod) -> Int8Model {
            Int8Model(quantized.map { w in
                let s = stats.layers[w]!, (name, weight) = names[w]!
                let q = QuantizedConv.quantize(weight: weight, inputScale: s.scale(method), inputSigned: s.signed)
                q.outputScale = stats.outputs[w]?.scale(method, signed: true)
                return (name, weight, q)
            })
        }
        let candidates = ActivationScaleMethod.allCases.map { ($0, build($0)) }

        // 2. Per image: float32 reference outputs, then each candidate's, compared.
        var sums = [(Double, Double)](repeating: (0, 0), count: candidates.count)
        let compare = OutputObserver(layers: Set(compared))
        Int8Inference.observer = compare
        for i in 0..<count {
            try MixedPrecision.select(.fp32)
            compare.reference = nil
            compare.outputs = []
            try forward(i)
            step()
            let reference = compare.outputs
            for (c, (_, m)) in candidates.enumerated() {
                try MixedPrecision.select(.int8)
                Int8Inference.model = m
                compare.reference = reference
                compare.outputs = []
                compare.sums = (0, 0)
                try forward(i)
                step()
                sums[c].0 += compare.sums.0
                sums[c].1 += compare.sums.1
            }
        }
        let errors = zip(candidates, sums).map { c, s in (c.0, s.1 > 0 ? (s.0 / s.1).squareRoot() : 0) }
        let best = errors.min { $0.1 < $1.1 }!
        let chosen = candidates.first { $0.0 == best.0 }!.1
        let report = Int8CalibrationReport(images: count, quantized: quantized.map { names[$0]!.0 }, kept: kept,
                                           errors: errors, chosen: best.0, compared: compared.compactMap { names[$0]?.0 })
        return (chosen, report)
    }
}

/// Per convolution (by weight): the input's sign, largest magnitude and a histogram of magnitudes, in first-seen
/// order.
final class StatisticsObserver: ConvObserver {
    struct Layer {
        var grouped = false
        var signed = false
        var maximum: Float = 0
        var count: UInt64 = 0
        /// Magnitudes binned by their float bits' top 15 bits (sign dropped: 8 exponent bits and 6 mantissa bits),
        /// so every bin spans at most 1/64 of its values; monotonic in the magnitude.
        var histogram = [UInt64](repeating: 0, count: StatisticsObserver.bins)

        /// The step for q in 0...255 (−127...127 when negatives were seen, or with `signed`).
        func scale(_ method: ActivationScaleMethod, signed: Bool = false) -> Float {
            let signed = signed || self.signed
            var t = maximum
            if method == .percentile && count > 0 {
                let target = UInt64((Double(count) * 0.9999).rounded(.up))
                var seen: UInt64 = 0
                for (b, c) in histogram.enumerated() {
                    seen += c
                    if seen >= target {
                        t = min(maximum, Float(bitPattern: UInt32(b + 1) << StatisticsObserver.shift))
                        break
                    }
                }
            }
            guard t > 0 && t.isFinite else { return 1 }
            return t / (signed ? 127 : 255)
        }
    }

    static let shift: UInt32 = 17
    static let bins = 1 << (31 - 17)
    var layers: [UnsafeMutablePointer<Float>: Layer] = [:]
    /// The same of each one's output (a downsample's s8 scale, `QuantizedConv.outputScale`).
    var outputs: [UnsafeMutablePointer<Float>: Layer] = [:]
    var order: [UnsafeMutablePointer<Float>] = []
    private let lock = NSLock()

    func observe(weight: UnsafeMutablePointer<Float>, groups: Int, input: UnsafeBufferPointer<Float>, output: UnsafeBufferPointer<Float>) {
        if layers[weight] == nil { order.append(weight); layers[weight] = Layer() }
        var layer = layers.removeValue(forKey: weight)!
        if groups > 1 { layer.grouped = true }
        add(input, to: &layer)
        layers[weight] = layer
        var out = outputs.removeValue(forKey: weight) ?? Layer()
        add(output, to: &out)
        outputs[weight] = out
    }

    private func add(_ values: UnsafeBufferPointer<Float>, to layer: inout Layer) {
        guard let base = values.baseAddress else { return }
        parallelChunks(values.count, minimum: 1 << 16) { a, b in
            var local = [UInt64](repeating: 0, count: StatisticsObserver.bins)
            var negative = false, maximum: Float = 0, finite: UInt64 = 0
            for i in a..<b {
                let v = base[i]
                guard v.isFinite else { continue }
                if v < 0 { negative = true }
                let m = abs(v)
                if m > maximum { maximum = m }
                local[Int(m.bitPattern >> StatisticsObserver.shift)] += 1
                finite += 1
            }
            lock.lock()
            if negative { layer.signed = true }
            layer.maximum = max(layer.maximum, maximum)
            layer.count += finite
            for (j, c) in local.enumerated() where c > 0 { layer.histogram[j] += c }
            lock.unlock()
        }
    }
}

/// Records the outputs of some convolutions in call order (the reference run), or compares each against the
/// reference's output of the same call: sums of squared differences and of squared reference values.
final class OutputObserver: ConvObserver {
    let layers: Set<UnsafeMutablePointer<Float>>
    var outputs: [[Float]] = []
    var reference: [[Float]]?
    var sums: (Double, Double) = (0, 0)

    init(layers: Set<UnsafeMutablePointer<Float>>) { self.layers = layers }

    func observe(weight: UnsafeMutablePointer<Float>, groups: Int, input: UnsafeBufferPointer<Float>, output: UnsafeBufferPointer<Float>) {
        guard layers.contains(weight) else { return }
        guard let reference else { outputs.append(Array(output)); return }
        let index = outputs.count
        outputs.append([])
        guard index < reference.count, reference[index].count == output.count else { return }
        var d = 0.0, r = 0.0
        for (a, b) in zip(output, reference[index]) where a.isFinite && b.isFinite {
            d += Double(a - b) * Double(a - b)
            r += Double(b) * Double(b)
        }
        sums.0 += d
        sums.1 += r
    }
}
