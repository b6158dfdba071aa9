// Mirrors android_demo/core/src/test/kotlin/veil/core/SessionLifecycleTest.kt
import Foundation
import VeilCore
import XCTest

/**
 * The lifecycle both apps share, against testvectors/lifecycle.json (toolkit/serve/lifecycle.py writes it): every
 * transition of every reachable configuration, reached by its path from idle, and the apps' named failure paths.
 */
final class SessionLifecycleTest: XCTestCase {
    private func vectors() throws -> JSONObject {
        let f = TestVectors.dir.appendingPathComponent("lifecycle.json")
        guard let data = FileManager.default.contents(atPath: f.path) else {
            throw IllegalStateException(message: "\(f.path) not found")
        }
        return try JSONObject(String(decoding: data, as: UTF8.self))
    }

    /** Records what the lifecycle releases, in order. */
    private final class Released: SessionReleaser {
        var log: [String] = []

        func release(_ resource: SessionResource) { log.append(resource.wireName) }
    }

    private func names(_ a: JSONArray) throws -> [String] { try (0..<a.length).map { try a.getString($0) } }

    private func replay(_ lifecycle: SessionLifecycle, _ events: [String]) throws {
        for e in events { lifecycle.on(try LifecycleEvent.byName(e)) }
    }

    func testEveryTransitionOfTheSharedTableGivesItsStateAndReleases() throws {
        let table = try vectors().getJSONArray("transitions")
        XCTAssertEqual(70, table.length)
        for i in 0..<table.length {
            let t = try table.getJSONObject(i)
            let released = Released()
            let lifecycle = SessionLifecycle(released)
            try replay(lifecycle, try names(t.getJSONArray("path")))
            let what = "\(try names(t.getJSONArray("path"))) + \(try t.getString("event"))"
            XCTAssertEqual(try t.getString("state"), lifecycle.state().wireName, what)
            XCTAssertEqual(try t.getBoolean("microphone"), lifecycle.holds(.microphone), what)
            XCTAssertEqual(try t.getBoolean("socket"), lifecycle.holds(.socket), what)
            released.log.removeAll()
            lifecycle.on(try LifecycleEvent.byName(t.getString("event")))
            XCTAssertEqual(try t.getString("next"), lifecycle.state().wireName, what)
            XCTAssertEqual(try names(t.getJSONArray("release")), released.log, what)
            let step = SessionLifecycle.step(try SessionState.byName(t.getString("state")), try t.getBoolean("microphone"),
                                             try t.getBoolean("socket"), try LifecycleEvent.byName(t.getString("event")))
            XCTAssertEqual(try names(t.getJSONArray("acquire")), step.acquired.map { $0.wireName }, what)
        }
    }

    func testTheAppsFailurePathsEndWithNothingHeldEachResourceReleasedOnce() throws {
        let scenarios = try vectors().getJSONArray("scenarios")
        XCTAssertTrue(scenarios.length >= 10)
        for i in 0..<scenarios.length {
            let sc = try scenarios.getJSONObject(i)
            let name = try sc.getString("name")
            let released = Released()
            let lifecycle = SessionLifecycle(released)
            let events = try names(sc.getJSONArray("events"))
            let states = try names(sc.getJSONArray("states"))
            var expected: [String] = []
            for (k, e) in events.enumerated() {
                lifecycle.on(try LifecycleEvent.byName(e))
                XCTAssertEqual(states[k], lifecycle.state().wireName, "\(name), after \(e)")
                expected += try names(sc.getJSONArray("release").getJSONArray(k))
            }
            XCTAssertEqual(expected, released.log, name)
            let held = try names(sc.getJSONArray("held"))
            XCTAssertEqual(held, SessionResource.allCases.filter { lifecycle.holds($0) }.map { $0.wireName }, name)
            if lifecycle.state().terminal { XCTAssertTrue(held.isEmpty, name) }
        }
    }

    func testAReleaserThatThrowsStillLetsTheSocketGoAndNamesAreChecked() throws {
        // Swift's releaser cannot throw (SessionReleaser.release is not `throws`): both resources go, in order
        let released = Released()
        let lifecycle = SessionLifecycle(released)
        lifecycle.on(.start)
        lifecycle.on(.connected)
        XCTAssertTrue(lifecycle.on(.fail))
        XCTAssertEqual(["microphone", "socket"], released.log)
        XCTAssertEqual(.failed, lifecycle.state())
        XCTAssertFalse(lifecycle.on(.fail))
        let v = try vectors()
        XCTAssertEqual(try names(v.getJSONArray("states")), SessionState.allCases.map { $0.wireName })
        XCTAssertEqual(try names(v.getJSONArray("terminal")), SessionState.allCases.filter { $0.terminal }.map { $0.wireName })
        XCTAssertEqual(try names(v.getJSONArray("events")), LifecycleEvent.allCases.map { $0.wireName })
        let e = assertThrows(IllegalArgumentException.self, "pause") { try LifecycleEvent.byName("pause") }
        XCTAssertEqual("unknown lifecycle event 'pause'", e?.message)
    }
}
