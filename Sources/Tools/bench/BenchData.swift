import Data
import Evaluation
import Foundation

/// A 512x512 shapes image: realistic content for codec and pipeline timings.
private func shapes512() -> ShapesExample { ShapesGenerator(size: 512, seed: 1).example(split: 0, index: 0) }

/// Data-path cases: codecs, augmentation pipelines, the loader, the synthetic generator and mIoU.
let dataCases: [BenchCase] = [
    BenchCase(name: "png_decode_512") {
        let bytes = try encodePNG(shapes512().image)
        return ({ _ = try decodeImage(bytes, name: "bench.png") },
                { t in ["mpix_per_s": 512 * 512 / t / 1e6, "file_kb": Double(bytes.count) / 1024] })
    },
    BenchCase(name: "jpeg_decode_512") {
        let bytes = try encodeJPEG(shapes512().image, quality: 92)
        return ({ _ = try decodeImage(bytes, name: "bench.jpg") },
                { t in ["mpix_per_s": 512 * 512 / t / 1e6, "file_kb": Double(bytes.count) / 1024] })
    },
    BenchCase(name: "png_encode_512") {
        let image = shapes512().image
        return ({ _ = try encodePNG(image) }, { t in ["mpix_per_s": 512 * 512 / t / 1e6] })
    },
    BenchCase(name: "det_pipeline_512") {
        // mmdet defaults: 512x512 → 800x800 (short edge 800), flip, normalise, pad to 32.
        let sample = shapes512().detectionSample(filename: "bench")
        let pipeline = DetectionPipeline()
        var rng = SplitMix64(seed: 0)
        return ({ _ = pipeline(sample, rng: &rng) }, { t in ["images_per_s": 1 / t] })
    },
    BenchCase(name: "seg_pipeline_512") {
        // mmseg ADE20K train pipeline: random rescale of (2048, 512), 512x512 crop, flip, photometric, pad.
        let sample = shapes512().segmentationSample(filename: "bench")
        let pipeline = SegmentationPipeline(reduceZeroLabel: false)
        var rng = SplitMix64(seed: 0)
        return ({ _ = pipeline(sample, rng: &rng) }, { t in ["images_per_s": 1 / t] })
    },
    BenchCase(name: "shapes_generate_192") {
        let generator = ShapesGenerator(size: 192, seed: 0)
        var index = 0
        return ({ _ = generator.example(split: 0, index: index); index += 1 }, { t in ["images_per_s": 1 / t] })
    },
    BenchCase(name: "loader_shapes_det_epoch") {
        // One epoch of 32 on-the-fly 192x192 shapes images at mmdet's (1333, 800) scale, batch 4, 2 workers.
        let dataset = ShapesDetectionDataset(generator: ShapesGenerator(size: 192, seed: 0), count: 32,
                                             pipeline: DetectionPipeline())
        let loader = DataLoader(dataset: dataset, batchSize: 4, seed: 0, workers: 2)
        var epoch = 0
        return ({
            let it = loader.epoch(epoch)
            while try it.next() != nil {}
            epoch += 1
        }, { t in ["images_per_s": 32 / t] })
    },
    BenchCase(name: "miou_512") {
        let example = shapes512()
        var pred = example.label
        for i in stride(from: 0, to: pred.labels.count, by: 7) { pred.labels[i] = UInt8(i % 5) }
        return ({
            var metric = MIoUMetric(numClasses: 5)
            try metric.process(pred: pred, label: example.label)
            _ = metric.compute()
        }, { t in ["mpix_per_s": 512 * 512 / t / 1e6] })
    },
]
