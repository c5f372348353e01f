/// The toolkit's one error family. Every failure is reported as one line that names the file, config key or
/// argument at fault and the problem; the case says what kind of failure it is (and so the tool's exit status).
public enum KitError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A config file, key or `--set` override is wrong: "<file>: <key>: <problem>".
    case config(String)
    /// A command-line argument is wrong.
    case usage(String)
    /// A file or folder cannot be read or written.
    case io(String)
    /// A file's content is malformed or unsupported (JSON, safetensors, COCO, images, label maps).
    case format(String)
    /// Weights that do not fit the model, or a file that is not the checkpoint it should be.
    case checkpoint(String)
    /// A model cannot be built or run as asked (unknown arch, input size the model cannot take).
    case model(String)
    /// Data that break an invariant the computation needs (a label outside the classes, sizes that disagree).
    case data(String)
    /// Training stopped (non-finite loss, nothing to resume from).
    case training(String)
    /// Ctrl-C during training; a checkpoint was saved.
    case interrupted(iteration: Int, checkpoint: String)

    public var description: String {
        switch self {
        case let .config(m), let .usage(m), let .io(m), let .format(m), let .checkpoint(m), let .model(m), let .data(m),
             let .training(m):
            return m
        case let .interrupted(it, ckpt): return "interrupted after iteration \(it); checkpoint saved to \(ckpt) (continue with --resume)"
        }
    }

    /// The same error with `prefix` before its message (naming the file it concerns), kind and exit status kept.
    public func prefixed(_ prefix: String) -> KitError {
        switch self {
        case let .config(m): return .config(prefix + m)
        case let .usage(m): return .usage(prefix + m)
        case let .io(m): return .io(prefix + m)
        case let .format(m): return .format(prefix + m)
        case let .checkpoint(m): return .checkpoint(prefix + m)
        case let .model(m): return .model(prefix + m)
        case let .data(m): return .data(prefix + m)
        case let .training(m): return .training(prefix + m)
        case .interrupted: return self
        }
    }

    /// The tool's exit status: 2 for usage and config errors, 130 for an interrupt, 1 otherwise.
    public var exitCode: Int32 {
        switch self {
        case .config, .usage: return 2
        case .interrupted: return 130
        default: return 1
        }
    }
}
