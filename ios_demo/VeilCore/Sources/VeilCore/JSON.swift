// Swift only: stands in for org.json (JSONObject, JSONArray), which the Kotlin core gets from Android (and from
// Debian's AOSP build of it in the JVM tests). Foundation's JSONSerialization is not used: it hands numbers back
// as NSNumber, where true and 1 are the same object on Apple platforms and differ on Linux, and it does not keep
// key order. This parser is strict RFC 8259 JSON; objects keep their keys in insertion order (as Android's
// org.json does), so documents written from them read top to bottom as they were built.
import Foundation

/** One JSON value; numbers written without fraction or exponent that fit an Int are `.int` (org.json's Integer/Long). */
public enum JSONValue {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array(JSONArray)
    case object(JSONObject)

    /** The value as JSON text (no line breaks when `indent` is 0). Non-finite doubles become null. */
    public func toString(_ indent: Int = 0) -> String {
        var out = ""
        JSONWriter(indent: indent).write(self, &out, 0)
        return out
    }
}

/** Malformed JSON, or a value of the wrong type asked for by a `get...` accessor (org.json's JSONException). */
public final class JSONException: Error, CustomStringConvertible, @unchecked Sendable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/** An ordered JSON object; `put` returns the object so calls chain as in org.json. */
public final class JSONObject {
    public private(set) var keys: [String] = []
    private var map: [String: JSONValue] = [:]

    public init() {}

    /** Parse `text`, which must hold one JSON object. */
    public convenience init(_ text: String) throws {
        self.init()
        guard case .object(let o) = try JSONParser.parse(Array(text.utf8)) else {
            throw JSONException("A JSONObject text must begin with '{'")
        }
        keys = o.keys
        map = o.map
    }

    public var length: Int { keys.count }

    public func has(_ key: String) -> Bool { map[key] != nil }

    /** The value of `key`, nil when the object has none (JSON null is `.null`). */
    public func opt(_ key: String) -> JSONValue? { map[key] }

    @discardableResult
    public func put(_ key: String, _ value: JSONValue) -> JSONObject {
        if map[key] == nil { keys.append(key) }
        map[key] = value
        return self
    }

    @discardableResult
    public func put(_ key: String, _ value: String) -> JSONObject { put(key, .string(value)) }

    @discardableResult
    public func put(_ key: String, _ value: Int) -> JSONObject { put(key, .int(value)) }

    @discardableResult
    public func put(_ key: String, _ value: Double) -> JSONObject { put(key, .double(value)) }

    @discardableResult
    public func put(_ key: String, _ value: Bool) -> JSONObject { put(key, .bool(value)) }

    @discardableResult
    public func put(_ key: String, _ value: JSONObject) -> JSONObject { put(key, .object(value)) }

    @discardableResult
    public func put(_ key: String, _ value: JSONArray) -> JSONObject { put(key, .array(value)) }

    public func remove(_ key: String) {
        if map.removeValue(forKey: key) != nil { keys.removeAll { $0 == key } }
    }

    public func get(_ key: String) throws -> JSONValue {
        guard let v = map[key] else { throw JSONException("JSONObject[\"\(key)\"] not found.") }
        return v
    }

    public func getJSONObject(_ key: String) throws -> JSONObject {
        if case .object(let o) = try get(key) { return o }
        throw JSONException("JSONObject[\"\(key)\"] is not a JSONObject.")
    }

    public func getJSONArray(_ key: String) throws -> JSONArray {
        if case .array(let a) = try get(key) { return a }
        throw JSONException("JSONObject[\"\(key)\"] is not a JSONArray.")
    }

    public func getString(_ key: String) throws -> String {
        if case .string(let s) = try get(key) { return s }
        throw JSONException("JSONObject[\"\(key)\"] is not a string.")
    }

    public func getInt(_ key: String) throws -> Int {
        if let i = JSONValue.integer(try get(key)) { return i }
        throw JSONException("JSONObject[\"\(key)\"] is not an int.")
    }

    /** org.json's getLong: Kotlin's Long is Swift's (64-bit) Int. */
    public func getLong(_ key: String) throws -> Int { try getInt(key) }

    public func getDouble(_ key: String) throws -> Double {
        switch try get(key) {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw JSONException("JSONObject[\"\(key)\"] is not a number.")
        }
    }

    public func getBoolean(_ key: String) throws -> Bool {
        if case .bool(let b) = try get(key) { return b }
        throw JSONException("JSONObject[\"\(key)\"] is not a Boolean.")
    }

    public func optJSONObject(_ key: String) -> JSONObject? {
        if case .object(let o)? = map[key] { return o }
        return nil
    }

    public func optString(_ key: String, _ fallback: String = "") -> String {
        switch map[key] {
        case .string(let s)?: return s
        case nil, .null?: return fallback
        case let v?: return v.toString()
        }
    }

    /** The object as JSON text, `indent` spaces per level (org.json's toString(indent)). */
    public func toString(_ indent: Int = 0) -> String { JSONValue.object(self).toString(indent) }

    /** A deep copy (org.json's `JSONObject(other.toString())`). */
    public func copy() -> JSONObject {
        try! JSONObject(toString())
    }
}

/** A JSON array; `put` appends. */
public final class JSONArray {
    public private(set) var values: [JSONValue]

    public init(_ values: [JSONValue] = []) {
        self.values = values
    }

    public var length: Int { values.count }

    @discardableResult
    public func put(_ value: JSONValue) -> JSONArray {
        values.append(value)
        return self
    }

    public func opt(_ index: Int) -> JSONValue? { index >= 0 && index < values.count ? values[index] : nil }

    public func get(_ index: Int) throws -> JSONValue {
        guard let v = opt(index) else { throw JSONException("JSONArray[\(index)] not found.") }
        return v
    }

    public func getJSONObject(_ index: Int) throws -> JSONObject {
        if case .object(let o) = try get(index) { return o }
        throw JSONException("JSONArray[\(index)] is not a JSONObject.")
    }

    public func getJSONArray(_ index: Int) throws -> JSONArray {
        if case .array(let a) = try get(index) { return a }
        throw JSONException("JSONArray[\(index)] is not a JSONArray.")
    }

    public func getString(_ index: Int) throws -> String {
        if case .string(let s) = try get(index) { return s }
        throw JSONException("JSONArray[\(index)] is not a string.")
    }

    public func getInt(_ index: Int) throws -> Int {
        if let i = JSONValue.integer(try get(index)) { return i }
        throw JSONException("JSONArray[\(index)] is not an int.")
    }

    public func optJSONObject(_ index: Int) -> JSONObject? {
        if case .object(let o)? = opt(index) { return o }
        return nil
    }

    public func toString(_ indent: Int = 0) -> String { JSONValue.array(self).toString(indent) }
}

extension JSONValue {
    /** An integral number as Int (org.json's getInt of 144 or 144.0); nil for anything else. */
    static func integer(_ v: JSONValue) -> Int? {
        switch v {
        case .int(let i): return i
        case .double(let d): return Int(exactly: d)
        default: return nil
        }
    }
}

/** Strict RFC 8259 parsing of UTF-8 bytes; nesting deeper than 512 is refused rather than risking the stack. */
struct JSONParser {
    static let MAX_DEPTH = 512

    private let bytes: [UInt8]
    private var i = 0
    private var depth = 0

    private init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var p = JSONParser(bytes)
        p.skipSpace()
        let v = try p.value()
        p.skipSpace()
        if p.i != bytes.count { throw p.error("unexpected text after the JSON value") }
        return v
    }

    private func error(_ what: String) -> JSONException {
        JSONException("\(what) at character \(i + 1)")
    }

    private mutating func skipSpace() {
        while i < bytes.count && (bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D) {
            i += 1
        }
    }

    private mutating func value() throws -> JSONValue {
        guard i < bytes.count else { throw error("unexpected end of text") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return try number()
        }
    }

    private mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        if i + w.count > bytes.count || Array(bytes[i..<(i + w.count)]) != w { throw error("expected \(word)") }
        i += w.count
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONParser.MAX_DEPTH { throw error("nesting deeper than \(JSONParser.MAX_DEPTH)") }
    }

    private mutating func object() throws -> JSONValue {
        try enter()
        i += 1
        let o = JSONObject()
        skipSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "}") {
            i += 1
            depth -= 1
            return .object(o)
        }
        while true {
            skipSpace()
            guard i < bytes.count && bytes[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try string()
            skipSpace()
            guard i < bytes.count && bytes[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
            i += 1
            skipSpace()
            o.put(key, try value())
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of text") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if bytes[i] == UInt8(ascii: "}") {
                i += 1
                depth -= 1
                return .object(o)
            }
            throw error("expected ',' or '}'")
        }
    }

    private mutating func array() throws -> JSONValue {
        try enter()
        i += 1
        let a = JSONArray()
        skipSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "]") {
            i += 1
            depth -= 1
            return .array(a)
        }
        while true {
            skipSpace()
            a.put(try value())
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of text") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if bytes[i] == UInt8(ascii: "]") {
                i += 1
                depth -= 1
                return .array(a)
            }
            throw error("expected ',' or ']'")
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("bad \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    private mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw error("unterminated string") }
            let c = bytes[i]
            i += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw error("control character in a string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                continue
            }
            guard i < bytes.count else { throw error("unterminated string") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 && i + 6 <= bytes.count
                    && bytes[i] == UInt8(ascii: "\\") && bytes[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                // a lone surrogate cannot be held by a Swift String: it becomes U+FFFD
                let replacement: Unicode.Scalar = "\u{FFFD}"
                let u = Unicode.Scalar(scalar) ?? replacement
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw error("bad escape")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        var integral = true
        if i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("unexpected character") }
        if bytes[i] == 0x30 {
            i += 1
        } else {
            while i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
        }
        if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard i < bytes.count, bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("expected a digit") }
            while i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
        }
        if i < bytes.count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            integral = false
            i += 1
            if i < bytes.count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
            guard i < bytes.count, bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("expected a digit") }
            while i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if integral, let v = Int(text) { return .int(v) }
        guard let d = Double(text) else { throw error("bad number") }
        return .double(d)
    }
}

/** JSON text from values: keys in insertion order, `indent` spaces per level. */
struct JSONWriter {
    let indent: Int

    func write(_ v: JSONValue, _ out: inout String, _ level: Int) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): writeString(s, &out)
        case .array(let a):
            if a.values.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (k, x) in a.values.enumerated() {
                if k > 0 { out += "," }
                newline(&out, level + 1)
                write(x, &out, level + 1)
            }
            newline(&out, level)
            out += "]"
        case .object(let o):
            if o.keys.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (k, key) in o.keys.enumerated() {
                if k > 0 { out += "," }
                newline(&out, level + 1)
                writeString(key, &out)
                out += indent > 0 ? ": " : ":"
                write(o.opt(key) ?? .null, &out, level + 1)
            }
            newline(&out, level)
            out += "}"
        }
    }

    private func newline(_ out: inout String, _ level: Int) {
        if indent > 0 { out += "\n" + String(repeating: " ", count: indent * level) }
    }

    private func writeString(_ s: String, _ out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
