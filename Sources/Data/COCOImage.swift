/// One `images` entry.
public struct COCOImage: Equatable, Sendable {
    public var id: Int
    public var width: Int
    public var height: Int
    public var fileName: String

    public init(id: Int, width: Int, height: Int, fileName: String) {
        self.id = id
        self.width = width
        self.height = height
        self.fileName = fileName
    }
}
