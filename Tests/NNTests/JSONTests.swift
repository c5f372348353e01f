import XCTest
import Engine
import NN

/// JSON.parse over json-c, where json-c would hand back something other than the text says.
final class JSONTests: XCTestCase {
    func parseError(_ text: String, duplicates: Bool = false) -> String {
        do {
            _ = try JSON.parse(text, source: "t.json", rejectDuplicateKeys: duplicates)
        } catch {
            return "\(error)"
        }
        XCTFail("expected an error for \(text)")
        return ""
    }

    /// A bare number at the very end of the input was "unexpected end of input" (json-c waits for more digits), so
    /// serialising a number and parsing it back failed.
    func testBareTopLevelValues() throws {
        XCTAssertEqual(try JSON.parse("-1"), .int(-1))
        XCTAssertEqual(try JSON.parse("5"), .int(5))
        XCTAssertEqual(try JSON.parse("1.5e3"), .double(1500))
        XCTAssertEqual(try JSON.parse("true"), .bool(true))
        XCTAssertEqual(try JSON.parse(#""a""#), .string("a"))
        for v: JSON in [.int(-1), .double(0.1), .int(Int.max), [1, 2], .object([("a", [true, nil])])] {
            XCTAssertEqual(try JSON.parse(v.serialized()), v)
        }
        XCTAssertTrue(parseError("{\"a\": 1").contains("unexpected end of input"))
        XCTAssertTrue(parseError("tru").contains("t.json: malformed JSON"))
    }

    /// json-c's strict mode: a trailing comma or a comment is malformed JSON.
    func testLenientExtrasAreRefused() {
        for text in [#"{"a": 1,}"#, "[1, 2,]", #"{"a": 1 /* note */}"#] {
            XCTAssertTrue(parseError(text).contains("t.json: malformed JSON"), text)
        }
    }

    /// json-c reads NaN, Infinity and 1e400 (inf): kept as doubles, for schemas to refuse with the key named.
    func testNonFiniteNumbersStayDoubles() throws {
        XCTAssertEqual(try JSON.parse(#"{"a": {"b": 1e400}}"#)["a"]?["b"]?.doubleValue, .infinity)
        XCTAssertEqual(try JSON.parse("[NaN]").arrayValue?.first?.doubleValue?.isNaN, true)
    }

    /// json-c saturates integers beyond 64 bits and keeps 2^63...2^64-1 as unsigned: they are doubles here, so an
    /// integer reader refuses them instead of reading a clamped number.
    func testIntegersBeyond64BitsAreNotClamped() throws {
        XCTAssertEqual(try JSON.parse("[9223372036854775807]"), [.int(Int.max)])
        for text in ["[9223372036854775808]", "[18446744073709551615]", "[100000000000000000000000]", "[-100000000000000000000000]"] {
            let v = try XCTUnwrap(JSON.parse(text).arrayValue?.first)
            XCTAssertNil(v.intValue, text)
            XCTAssertNotNil(v.doubleValue, text)
        }
    }

    func testStringsKeepEmbeddedNULsAndMustBeUTF8() throws {
        XCTAssertEqual(try JSON.parse(#"["a\u0000b"]"#), [.string("a\u{0}b")])
        XCTAssertEqual(try JSON.parse(#"{"é": "€"}"#)["é"], .string("€"))
        // Two keys that differ only in invalid bytes became the same key once repaired (found by fuzzing).
        for bytes: [UInt8] in [[0x22, 0x61, 0x8B, 0x22], [0x7B, 0x22, 0x61, 0xF2, 0x22, 0x3A, 0x31, 0x7D]] {
            let m = bytes.withUnsafeBytes { raw -> String in
                do { _ = try JSON.parse(raw, source: "t.json"); return "" } catch { return "\(error)" }
            }
            XCTAssertEqual(m, "t.json: malformed JSON: a string or key is not valid UTF-8")
        }
    }

    /// json-c keeps the last of two equal keys; with rejectDuplicateKeys the text is refused, naming the key and where.
    func testDuplicateKeys() throws {
        XCTAssertEqual(try JSON.parse(#"{"a": 1, "a": 2}"#)["a"], .int(2))
        XCTAssertTrue(parseError(#"{"a": 1, "a": 2}"#, duplicates: true).hasPrefix("t.json: malformed JSON: duplicate key 'a'"))
        XCTAssertTrue(parseError(#"{"m": [{"k": 1}, {"k": 1, "\u006b": 2}]}"#, duplicates: true).contains("duplicate key 'k' in m.1"))
        XCTAssertTrue(parseError("{\"a\\nb\": 1, \"a\\nb\": 2}", duplicates: true).contains("duplicate key 'a\\nb'"))
        // Equal keys in different objects, keys inside strings and comments, single quotes: not duplicates.
        XCTAssertNoThrow(try JSON.parse(#"{"a": {"a": 1}, "b": "\"a\": 2", "c": [{"a": 1}, {"a": 2}]}"#, rejectDuplicateKeys: true))
        var commented = #"{"a": 1, /* "a": 2 */ "b": 2}"#
        XCTAssertNil(commented.withUTF8 { JSON.firstDuplicateKey(UnsafeRawBufferPointer($0)) })
        XCTAssertTrue(parseError(#"{'a': 1, "a": 2}"#, duplicates: true).contains("duplicate key 'a'"))
        let path = JSON.firstDuplicateKey(UnsafeRawBufferPointer(start: nil, count: 0))
        XCTAssertNil(path)
    }

    /// /dev/zero (or a FIFO) as a config path was read forever.
    func testLoadRefusesWhatIsNotARegularFile() {
        XCTAssertThrowsError(try JSON.load(path: "/dev/zero")) { e in
            XCTAssertEqual(e as? KitError, .io("/dev/zero: cannot read file: not a regular file"))
        }
        XCTAssertThrowsError(try JSON.load(path: "/nonexistent/x.json")) { e in
            XCTAssertTrue("\(e)".hasPrefix("/nonexistent/x.json: cannot read file"), "\(e)")
        }
    }
}
