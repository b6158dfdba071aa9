// The microphone (Android: AudioCapture.kt over AudioRecord).
import AVFoundation
import Foundation
import VeilCore

/**
 * The microphone through AVAudioEngine, converted to 16 kHz mono and written into a PcmRingBuffer as 16-bit PCM
 * (what the Android app captures and what the corpus's WAV files hold). Capture never waits for inference: while
 * the prefix model compiles, loads or runs, audio piles up in the ring (60 s of it).
 *
 * The tap is installed at the hardware input format (`inputNode.inputFormat(forBus: 0)`, typically 48 kHz) and
 * AVAudioConverter resamples to 16 kHz: a tap that asks for 16 kHz directly aborts on real devices
 * ("IsFormatSampleRateAndChannelCountValid", format mismatch), and the hardware format changes with the route
 * (Bluetooth, USB, headset), so the tap and converter are re-installed on every route change and every
 * AVAudioEngineConfigurationChange.
 */
final class AudioCapture {
    private let engine = AVAudioEngine()
    private let ring: PcmRingBuffer
    private let onError: (String) -> Void
    private let target: AVAudioFormat
    /** Route and configuration changes are handled one at a time, in order. */
    private let queue = DispatchQueue(label: "veil-audio-config")
    private let lock = NSLock()
    private var converter: AVAudioConverter?
    private var observers: [NSObjectProtocol] = []
    private var running = false

    init(_ ring: PcmRingBuffer, onError: @escaping (String) -> Void) {
        self.ring = ring
        self.onError = onError
        target = AVAudioFormat(commonFormat: .pcmFormatFloat32, sampleRate: Double(Chunker.SAMPLE_RATE), channels: 1,
                               interleaved: false)!
    }

    /** Open the audio session for recording, tap the microphone and start the engine. */
    func start() throws {
        let session = AVAudioSession.sharedInstance()
        // .measurement: the least processing the system offers (no AGC, as Android's VOICE_RECOGNITION source)
        try session.setCategory(.record, mode: .measurement, options: [.allowBluetooth])
        try session.setActive(true)
        try installTap()
        let center = NotificationCenter.default
        observers.append(center.addObserver(forName: AVAudioSession.routeChangeNotification, object: session,
                                            queue: nil) { [weak self] note in
            let raw = note.userInfo?[AVAudioSessionRouteChangeReasonKey] as? UInt ?? 0
            let reason = AVAudioSession.RouteChangeReason(rawValue: raw) ?? .unknown
            self?.restart("the audio route changed (\(reason.rawValue))")
        })
        observers.append(center.addObserver(forName: .AVAudioEngineConfigurationChange, object: engine,
                                            queue: nil) { [weak self] _ in
            self?.restart("the audio engine's configuration changed")
        })
        lock.lock()
        running = true
        lock.unlock()
        engine.prepare()
        try engine.start()
    }

    /** Stop recording; what was captured stays in the ring for the reader, which then sees its end. */
    func stop() {
        lock.lock()
        running = false
        lock.unlock()
        for o in observers { NotificationCenter.default.removeObserver(o) }
        observers.removeAll()
        engine.inputNode.removeTap(onBus: 0)
        engine.stop()
        try? AVAudioSession.sharedInstance().setActive(false, options: .notifyOthersOnDeactivation)
        ring.close()
    }

    /** Tap at the hardware format, with a converter from it to 16 kHz mono float. */
    private func installTap() throws {
        let input = engine.inputNode
        let hardwareFormat = input.inputFormat(forBus: 0)
        guard hardwareFormat.sampleRate > 0 && hardwareFormat.channelCount > 0 else {
            throw VeilException("microphone", "no audio input is available (input format \(hardwareFormat))")
        }
        guard let converter = AVAudioConverter(from: hardwareFormat, to: target) else {
            throw VeilException("microphone", "cannot convert \(hardwareFormat) to 16 kHz mono")
        }
        lock.lock()
        self.converter = converter
        lock.unlock()
        input.removeTap(onBus: 0)
        // about 100 ms per buffer at the hardware rate
        input.installTap(onBus: 0, bufferSize: AVAudioFrameCount(hardwareFormat.sampleRate / 10),
                         format: hardwareFormat) { [weak self] buffer, _ in
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
                self.onError("microphone lost after \(why): \(error.localizedDescription)")
            }
        }
    }

    /** One tap buffer -> 16 kHz mono -> 16-bit PCM (round half to even, clipped) -> the ring. */
    private func convert(_ buffer: AVAudioPCMBuffer) {
        lock.lock()
        let converter = self.converter
        lock.unlock()
        guard let converter = converter, buffer.format == converter.inputFormat else { return }
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
            onError("audio conversion failed: \(error?.localizedDescription ?? "unknown error")")
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
