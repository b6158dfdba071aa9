package veil.core

import java.io.File
import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * The lifecycle both apps share, against testvectors/lifecycle.json (toolkit/serve/lifecycle.py writes it): every
 * transition of every reachable configuration, reached by its path from idle, and the apps' named failure paths.
 */
class SessionLifecycleTest {
    private val vectors: JSONObject by lazy {
        JSONObject(String(File(TestVectors.dir, "lifecycle.json").readBytes(), Charsets.UTF_8))
    }

    /** Records what the lifecycle releases, in order. */
    private class Released : SessionReleaser {
        val log = ArrayList<String>()

        override fun release(resource: SessionResource) {
            log.add(resource.wireName)
        }
    }

    private fun names(a: JSONArray): List<String> = (0 until a.length()).map { a.getString(it) }

    private fun replay(lifecycle: SessionLifecycle, events: List<String>) {
        for (e in events) lifecycle.on(LifecycleEvent.byName(e))
    }

    @Test
    fun `every transition of the shared table gives its state and releases`() {
        val table = vectors.getJSONArray("transitions")
        assertEquals(70, table.length())
        for (i in 0 until table.length()) {
            val t = table.getJSONObject(i)
            val released = Released()
            val lifecycle = SessionLifecycle(released)
            replay(lifecycle, names(t.getJSONArray("path")))
            val what = "${t.getJSONArray("path")} + ${t.getString("event")}"
            assertEquals(t.getString("state"), lifecycle.state().wireName, what)
            assertEquals(t.getBoolean("microphone"), lifecycle.holds(SessionResource.MICROPHONE), what)
            assertEquals(t.getBoolean("socket"), lifecycle.holds(SessionResource.SOCKET), what)
            released.log.clear()
            lifecycle.on(LifecycleEvent.byName(t.getString("event")))
            assertEquals(t.getString("next"), lifecycle.state().wireName, what)
            assertEquals(names(t.getJSONArray("release")), released.log, what)
            val step = SessionLifecycle.step(SessionState.byName(t.getString("state")), t.getBoolean("microphone"),
                t.getBoolean("socket"), LifecycleEvent.byName(t.getString("event")))
            assertEquals(names(t.getJSONArray("acquire")), step.acquired.map { it.wireName }, what)
        }
    }

    @Test
    fun `the apps' failure paths end with nothing held, each resource released once`() {
        val scenarios = vectors.getJSONArray("scenarios")
        assertTrue(scenarios.length() >= 10)
        for (i in 0 until scenarios.length()) {
            val sc = scenarios.getJSONObject(i)
            val name = sc.getString("name")
            val released = Released()
            val lifecycle = SessionLifecycle(released)
            val events = names(sc.getJSONArray("events"))
            val states = names(sc.getJSONArray("states"))
            val expected = ArrayList<String>()
            for ((k, e) in events.withIndex()) {
                lifecycle.on(LifecycleEvent.byName(e))
                assertEquals(states[k], lifecycle.state().wireName, "$name, after $e")
                expected.addAll(names(sc.getJSONArray("release").getJSONArray(k)))
            }
            assertEquals(expected, released.log, name)
            assertEquals(names(sc.getJSONArray("held")), SessionResource.values().filter { lifecycle.holds(it) }
                .map { it.wireName }, name)
            if (lifecycle.state().terminal) assertTrue(names(sc.getJSONArray("held")).isEmpty(), name)
        }
    }

    @Test
    fun `a releaser that throws still lets the socket go, and names are checked`() {
        val released = ArrayList<SessionResource>()
        val lifecycle = SessionLifecycle(object : SessionReleaser {
            override fun release(resource: SessionResource) {
                released.add(resource)
                if (resource == SessionResource.MICROPHONE) throw IllegalStateException("stop() called on an uninitialized AudioRecord")
            }
        })
        lifecycle.on(LifecycleEvent.START)
        lifecycle.on(LifecycleEvent.CONNECTED)
        assertThrows(IllegalStateException::class.java) { lifecycle.on(LifecycleEvent.FAIL) }
        assertEquals(listOf(SessionResource.MICROPHONE, SessionResource.SOCKET), released)
        assertEquals(SessionState.FAILED, lifecycle.state())
        assertFalse(lifecycle.on(LifecycleEvent.FAIL))
        assertEquals(names(vectors.getJSONArray("states")), SessionState.values().map { it.wireName })
        assertEquals(names(vectors.getJSONArray("terminal")), SessionState.values().filter { it.terminal }.map { it.wireName })
        assertEquals(names(vectors.getJSONArray("events")), LifecycleEvent.values().map { it.wireName })
        assertEquals("unknown lifecycle event 'pause'",
            assertThrows(IllegalArgumentException::class.java) { LifecycleEvent.byName("pause") }.message)
    }
}
