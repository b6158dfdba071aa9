// Swift only: the JSON reader/writer that stands in for org.json (JSON.swift).
import Foundation
import VeilCore
import XCTest

final class JSONTest: XCTestCase {
    func testParsesWhatPythonsJsonWritesAndKeepsKeyOrder() throws {
        let o = try JSONObject("{\"b\": 1, \"a\": [1.5, -2e3, true, false, null, \"\\u00e9\\ud83d\\ude00\\n\"], \"c\": {}}")
        XCTAssertEqual(["b", "a", "c"], o.keys)
        XCTAssertEqual(1, try o.getInt("b"))
        let a = try o.getJSONArray("a")
        XCTAssertEqual(6, a.length)
        if case .double(let d)? = a.opt(0) { XCTAssertEqual(1.5, d) } else { XCTFail("1.5 is a double") }
        if case .double(let d)? = a.opt(1) { XCTAssertEqual(-2000, d) } else { XCTFail("-2e3 is a double") }
        if case .bool(let b)? = a.opt(2) { XCTAssertTrue(b) } else { XCTFail("true is a bool") }
        if case .null? = a.opt(4) {} else { XCTFail("null is null") }
        XCTAssertEqual("é😀\n", try a.getString(5))
        XCTAssertEqual(0, try o.getJSONObject("c").length)
    }

    func testRefusesMalformedText() {
        for bad in ["", "{", "{\"a\" 1}", "{\"a\": 01}", "[1,]", "{\"a\": tru}", "\"\u{01}\"", "{} x", "[1.]", "{'a': 1}"] {
            XCTAssertNotNil(assertThrows(JSONException.self, bad) { try JSONObject(bad) }, bad)
        }
        XCTAssertNotNil(assertThrows(JSONException.self, "array") { try JSONObject("[1]") })
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        XCTAssertNotNil(assertThrows(JSONException.self, "deep") { try JSONObject("{\"a\": \(deep)}") })
    }

    func testWritesWhatItReadsIntegersStayIntegersAndNonFiniteIsNull() throws {
        let o = JSONObject().put("i", 3).put("d", 0.1).put("s", "q\"\\\u{7}").put("n", Double.nan)
            .put("l", JSONArray([.int(1), .null]))
        let text = o.toString(1)
        let back = try JSONObject(text)
        XCTAssertEqual(["i", "d", "s", "n", "l"], back.keys)
        if case .int(3)? = back.opt("i") {} else { XCTFail("3 stays an integer: \(text)") }
        XCTAssertEqual(0.1, try back.getDouble("d"))
        XCTAssertEqual("q\"\\\u{7}", try back.getString("s"))
        if case .null? = back.opt("n") {} else { XCTFail("NaN is written as null: \(text)") }
    }
}
