import ACmixKit
import Foundation

let extractor = try FeatureExtractor(arch: "acmix_resnet50", weights: "acmix_resnet50.safetensors", mode: .dense)
