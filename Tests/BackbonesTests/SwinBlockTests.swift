import Backbones
import Engine
import NN
import XCTest

/// The ACmix Swin block against the authors' PyTorch block (forward, and every gradient of sum(out·grad_out)).
final class SwinBlockTests: XCTestCase {
    func testACmixBlockMatchesReferenceForwardAndBackward() throws {
        let ref = try swinReference("acmix_swin_block.safetensors")
        let t = ref.tensors
        // dim 32, heads 2, 14x14, window 7, shift 3, mlp ratio 4.
        let block = SwinBlock(dim: 32, heads: 2, window: 7, shift: 3, mlpRatio: 4, acmix: true)
        block.eval()
        let params = t.filter { $0.key.hasPrefix("param.") }
        try block.load(stateDict: params, strict: true, stripPrefix: "param.", source: "acmix_swin_block")

        // Derived buffers equal the authors'.
        let mask = try XCTUnwrap(block.attentionMask(paddedHeight: 14, paddedWidth: 14))
        assertSwinClose(mask, t["param.attn_mask"], "attn_mask", tol: 0)
        let index = Tensor(block.attn.relativeIndex.map(Float.init), shape: [49, 49])
        assertSwinClose(index, t["param.attn.relative_position_index"], "relative_position_index", tol: 0)

        let x = try XCTUnwrap(t["input"]).copy()
        x.requiresGrad = true
        let y = block(x, height: 14, width: 14)
        assertSwinClose(y, t["output"], "output")
        (y * (try XCTUnwrap(t["grad_output"]))).sum().backward()
        assertSwinClose(x.grad, t["grad.input"], "grad.input")
        let named = block.namedParameters()
        XCTAssertEqual(named.count, t.keys.filter { $0.hasPrefix("grad.") && $0 != "grad.input" }.count)
        for (key, p) in named { assertSwinClose(p.grad, t["grad." + key], "grad." + key) }
    }

    func testShiftedWindowMaskMatchesRegionRule() {
        // 4x4 map, window 2, shift 1: window 3 (bottom-right) mixes 4 regions, window 0 none.
        let mask = swinShiftedWindowMask(height: 4, width: 4, window: 2, shift: 1)
        XCTAssertEqual(mask.shape, [4, 4, 4])
        XCTAssertEqual(mask.array[0..<16].filter { $0 != 0 }.count, 0)
        let w3 = Array(mask.array[48..<64])
        XCTAssertEqual(w3.filter { $0 == -100 }.count, 12)
    }
}
