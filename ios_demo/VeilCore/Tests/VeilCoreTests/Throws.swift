// Swift only: JUnit's assertThrows(Type::class.java) { ... }, which the Kotlin tests use to read a refusal's
// reason, for XCTest.
import Foundation
import XCTest

/** Runs `body`, which must throw an `E`; returns that error (nil and a test failure otherwise). */
@discardableResult
func assertThrows<E: Error>(_ type: E.Type, _ what: String = "", file: StaticString = #filePath, line: UInt = #line,
                            _ body: () throws -> Any?) -> E? {
    do {
        _ = try body()
    } catch let e as E {
        return e
    } catch {
        XCTFail("\(what): expected \(E.self), got \(Swift.type(of: error)): \(error)", file: file, line: line)
        return nil
    }
    XCTFail("\(what): expected \(E.self), nothing was thrown", file: file, line: line)
    return nil
}
