import Engine
import NN

extension FrozenWeights {
    /// Registers `module`'s convolution and linear weights (`FrozenWeights`), once per model, so an inference run
    /// packs each weight once. For inference only: an optimizer step forgets them.
    public static func install(module: Module) {
        install(module.namedTensors().map(\.1).filter { $0.shape.count == 2 || $0.shape.count == 4 }, owner: module)
    }
}
