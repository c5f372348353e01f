import ACmixKit
import Foundation

let args = CommandLine.arguments
let detector = try ObjectDetector(config: ModelConfig(args[1]), checkpoint: args[2])
