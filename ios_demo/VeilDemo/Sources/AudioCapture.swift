// The microphone (Android: AudioCapture.kt over AudioRecord).
import AVFoundation
import Foundation
import VeilCore

/**
 * The microphone through AVAudioEngine, converted to 16 kHz mono and written into a PcmRingBuffer as 16-bit PCM
 * (what the Android app captures and what the corpus's WAV files hold): VeilCore's `Microphone`, driven by the
 * session's lifecycle. Capture never waits for inference: while the prefix model compiles, loads or runs, audio
 * piles up in the ring (60 s of it).
 *
 * The tap sits on the input node's output bus, in that bus's format (`inputNode.outputFormat(forBus: 0)`, the
 * hardware rate, as Apple's samples and WhisperKit do), and AVAudioConverter resamples to 16 kHz mono: a tap that
 * asks for 16 kHz directly, or for a format whose channel count differs from the bus's (multichannel USB, voice
 * processing), aborts on real devices. The hardware format changes with the route, so the tap and converter are
 * re-installed on an AVAudioEngineConfigurationChange and on route changes that change the device (a headset
 * plugged or unplugged, a new device available) - not on category or override changes, which this object's own
 * `setCategory` causes. An interruption (a call, Siri, another app's audio) that begins ends the session through
 * `onError`: the engine has stopped and the user may be talking to someone else. Start, stop and restarts run on
 * one serial queue, in order.
 */
final class AudioCapture: Microphone, @unchecked Sendable {
    private let engine = AVAudioEngine()
    private let target: AVAudioFormat
    /** Start, stop, route and configuration changes, one at a time, in order. */
    private let queue = DispatchQueue(label: "veil-audio")
    private let lock = NSLock()
    private var ring: PcmRingBuffer?
    private var onError: (@Sendable (String) -> Void)?
    private var converter: AVAudioConverter?
    private var observers: [NSObjectProtocol] = []
    private var running = false

    init() {
        target = AVAudioFormat(commonFormat: .pcmFormatFloat32, sampleRate: Double(Chunker.SAMPLE_RATE), channels: 1,
                               interleaved: false)!
    }

    /** Open the audio session for recording, tap the microphone and start the engine. */
    func start(_ ring: PcmRingBuffer, _ onError: @escaping @Sendable (String) -> Void) throws {
        try queue.sync {
            lock.lock()
            self.ring = ring
            self.onError = onError
            lock.unlock()
            let session = AVAudioSession.sharedInstance()
            do {
                // .measurement: the least processing the system offers (no AGC, as Android's VOICE_RECOGNITION source)
                try session.setCategory(.record, mode: .measurement, options: [.allowBluetooth])
                try session.setActive(true)
                try installTap()
                observe(session)
                lock.lock()
                running = true
                lock.unlock()
                engine.prepare()
                try engine.start()
            } catch {
                stopOnQueue()
                throw error
            }
        }
    }

    /** Stop recording; what was captured stays in the ring for the reader, which then sees its end. Idempotent. */
    func stop() {
        queue.sync { stopOnQueue() }
    }

    private func stopOnQueue() {
        lock.lock()
        running = false
        let ring = self.ring
        lock.unlock()
        for o in observers { NotificationCenter.default.removeObserver(o) }
        observers.removeAll()
        engine.inputNode.removeTap(onBus: 0)
        engine.stop()
        try? AVAudioSession.sharedInstance().setActive(false, options: .notifyOthersOnDeactivation)
        ring?.close()
    }

    private func observe(_ session: AVAudioSession) {
        let center = NotificationCenter.default
        observers.append(center.addObserver(forName: AVAudioSession.routeChangeNotification, object: session,
                                            queue: nil) { [weak self] note in
            let raw = note.userInfo?[AVAudioSessionRouteChangeReasonKey] as? UInt ?? 0
            let reason = AVAudioSession.RouteChangeReason(rawValue: raw) ?? .unknown
            switch reason {
            case .newDeviceAvailable, .oldDeviceUnavailable, .routeConfigurationChange, .noSuitableRouteForCategory:
                self?.restart("the audio route changed (\(reason.rawValue))")
            default:
                break  // .categoryChange and .override: our own setCategory, the engine keeps running
            }
        })
        observers.append(center.addObserver(forName: .AVAudioEngineConfigurationChange, object: engine,
                                            queue: nil) { [weak self] _ in
            self?.restart("the audio engine's configuration changed")
        })
        observers.append(center.addObserver(forName: AVAudioSession.interruptionNotification, object: session,
                                            queue: nil) { [weak self] note in
            let raw = note.userInfo?[AVAudioSessionInterruptionTypeKey] as? UInt ?? 0
            guard AVAudioSession.InterruptionType(rawValue: raw) == .began else { return }
            self?.interrupted()
        })
    }

    /** Tap the input node's output bus in its own format, with a converter from it to 16 kHz mono float. */
    private func installTap() throws {
        let input = engine.inputNode
        let format = input.outputFormat(forBus: 0)
        guard format.sampleRate > 0 && format.channelCount > 0 else {
            throw VeilException("microphone", "no audio input is available (input format \(format))")
        }
        guard let converter = AVAudioConverter(from: format, to: target) else {
            throw VeilException("microphone", "cannot convert \(format) to 16 kHz mono")
        }
        lock.lock()
        self.converter = converter
        lock.unlock()
        input.removeTap(onBus: 0)
        // about 100 ms per buffer at the hardware rate
        input.installTap(onBus: 0, bufferSize: AVAudioFrameCount(format.sampleRate / 10),
                         format: format) { [weak self] buffer, _ in
            self?.convert(buffer)
        }
    }

    /** Re-install the tap for the new hardware format and restart the engine (it stops on these changes). */
    private func restart(_ why: String) {
        queue.async { [weak self] in
            guard let self = self else { return }
            self.lock.lock()
            let running = self.running
            self.lock.unlock()
            if !running { return }
            self.engine.stop()
            do {
                try self.installTap()
                self.engine.prepare()
                try self.engine.start()
            } catch {
                self.report("microphone lost after \(why): \(error.localizedDescription)")
            }
        }
    }

    /** A call, Siri or another app took the audio session: the session ends (the lifecycle then calls stop()). */
    private func interrupted() {
        queue.async { [weak self] in
            guard let self = self else { return }
            self.lock.lock()
            let running = self.running
            self.lock.unlock()
            if running { self.report("interrupted: another app or a call took the microphone") }
        }
    }

    /** Tell the session, off the audio queue: it answers by calling stop(), which runs on that queue. */
    private func report(_ message: String) {
        lock.lock()
        let onError = self.onError
        lock.unlock()
        guard let onError = onError else { return }
        DispatchQueue.global().async { onError(message) }
    }

    /** One tap buffer -> 16 kHz mono -> 16-bit PCM (round half to even, clipped) -> the ring. */
    private func convert(_ buffer: AVAudioPCMBuffer) {
        lock.lock()
        let converter = self.converter
        let ring = self.ring
        lock.unlock()
        guard let converter = converter, let ring = ring, buffer.format == converter.inputFormat else { return }
        let ratio = target.sampleRate / buffer.format.sampleRate
        let capacity = AVAudioFrameCount(ceil(Double(buffer.frameLength) * ratio)) + 32
        guard let out = AVAudioPCMBuffer(pcmFormat: target, frameCapacity: capacity) else { return }
        var supplied = false
        var error: NSError?
        let status = converter.convert(to: out, error: &error) { _, inputStatus in
            if supplied {
                // keep the converter's state for the next buffer: not the end of the stream
                inputStatus.pointee = .noDataNow
                return nil
            }
            supplied = true
            inputStatus.pointee = .haveData
            return buffer
        }
        if status == .error {
            report("audio conversion failed: \(error?.localizedDescription ?? "unknown error")")
            return
        }
        guard let channel = out.floatChannelData?[0] else { return }
        let n = Int(out.frameLength)
        var pcm = [Int16](repeating: 0, count: n)
        for i in 0..<n {
            let scaled = (channel[i] * Chunker.PCM16_SCALE).rounded(.toNearestOrEven)
            pcm[i] = Int16(max(-32768, min(32767, scaled)))
        }
        do {
            try ring.write(pcm)
        } catch {
            // the ring was closed by stop(): the last buffers after Stop are dropped
        }
    }
}
