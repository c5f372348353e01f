import ACmixKit
import Foundation

let extractor = try FeatureExtractor(arch: "acmix_resnet50", weights: "acmix_resnet50.safetensors", mode: .dense)
let features = try extractor.features(imageAt: "photo.jpg")
for f in features {
    print(f.name, f.tensor.shape)   // c2 [1, 256, H/4, W/4] ... c5 [1, 2048, H/32, W/32]
}
