// Mirrors android_demo/core/src/main/kotlin/veil/core/Chunker.kt
import Foundation

/**
 * One fixed-size window of 16 kHz PCM for the prefix: `samples` always holds `chunkSamples` floats; the last
 * chunk of an utterance is zero-padded and `validSamples` says how many of its samples are real audio.
 */
public struct Chunk {
    public let index: Int
    public let samples: [Float]
    public let validSamples: Int
    public let isLast: Bool

    public init(_ index: Int, _ samples: [Float], _ validSamples: Int, _ isLast: Bool) {
        self.index = index
        self.samples = samples
        self.validSamples = validSamples
        self.isLast = isLast
    }

    /** Seconds of real audio in this chunk at `sampleRate`. */
    public func validSeconds(_ sampleRate: Int) -> Double { Double(validSamples) / Double(sampleRate) }
}

/**
 * Cuts a stream of mono PCM into the prefix's fixed windows (2 s = 32 000 samples at 16 kHz by default), as
 * `toolkit.exporting.calibration.chunk_pcm` does for a whole utterance: full windows as soon as they fill, and at
 * the end one zero-padded window carrying its true sample count (an empty utterance still gives one window of
 * zeros with 0 valid samples, like chunk_pcm). Not thread-safe: one producer feeds it.
 */
public final class Chunker {
    public static let SAMPLE_RATE = 16000
    public static let DEFAULT_CHUNK_SAMPLES = 32000
    public static let PCM16_SCALE: Float = 32768.0

    public let chunkSamples: Int
    private var buffer: [Float]
    private var filled = 0
    private var emitted = 0
    private var finished = false

    /** Samples pushed so far. */
    public private(set) var totalSamples: Int64 = 0

    public init(_ chunkSamples: Int = Chunker.DEFAULT_CHUNK_SAMPLES) throws {
        try require(chunkSamples > 0, "chunk length must be positive, got \(chunkSamples) samples")
        self.chunkSamples = chunkSamples
        self.buffer = [Float](repeating: 0, count: chunkSamples)
    }

    /** Append float PCM in [-1, 1]; returns the windows that filled (possibly none). */
    public func push(_ pcm: [Float], _ offset: Int = 0, _ length: Int? = nil) throws -> [Chunk] {
        let length = length ?? (pcm.count - offset)
        try check(!finished, "chunker already finished")
        try require(offset >= 0 && length >= 0 && offset + length <= pcm.count, "push(\(offset), \(length)) out of range")
        var out: [Chunk] = []
        var i = offset
        let end = offset + length
        while i < end {
            let n = min(end - i, chunkSamples - filled)
            buffer.replaceSubrange(filled..<(filled + n), with: pcm[i..<(i + n)])
            filled += n
            i += n
            if filled == chunkSamples { out.append(emit(chunkSamples, false)) }
        }
        totalSamples += Int64(length)
        return out
    }

    /** Append 16-bit PCM (the microphone's 16-bit samples), scaled by 1/32768 as libsndfile reads it. */
    public func pushPcm16(_ pcm: [Int16], _ offset: Int = 0, _ length: Int? = nil) throws -> [Chunk] {
        let length = length ?? (pcm.count - offset)
        var f = [Float](repeating: 0, count: length)
        for i in 0..<length { f[i] = Float(pcm[offset + i]) / Chunker.PCM16_SCALE }
        return try push(f)
    }

    /**
     * End of the utterance: the zero-padded last window with its true sample count, or nil when the audio
     * ended exactly on a window boundary (and at least one window was emitted).
     */
    public func finish() throws -> Chunk? {
        try check(!finished, "chunker already finished")
        finished = true
        if filled == 0 && emitted > 0 { return nil }
        let valid = filled
        for i in filled..<chunkSamples { buffer[i] = 0.0 }
        return emit(valid, true)
    }

    private func emit(_ valid: Int, _ last: Bool) -> Chunk {
        let chunk = Chunk(emitted, buffer, valid, last)
        emitted += 1
        buffer = [Float](repeating: 0, count: chunkSamples)
        filled = 0
        return chunk
    }

    /** A whole utterance -> its windows, the last one zero-padded (chunk_pcm). */
    public static func chunkUtterance(_ pcm: [Float], _ chunkSamples: Int = Chunker.DEFAULT_CHUNK_SAMPLES) throws -> [Chunk] {
        let chunker = try Chunker(chunkSamples)
        var out = try chunker.push(pcm)
        if let last = try chunker.finish() { out.append(last) }
        if !out.isEmpty && !out[out.count - 1].isLast {
            let end = out[out.count - 1]
            out[out.count - 1] = Chunk(end.index, end.samples, end.validSamples, true)
        }
        return out
    }

    /** Valid embedding frames of `samples` of audio: ceil(samples / frameSamples), as frames_for. */
    public static func framesFor(_ samples: Int64, _ frameSamples: Int) throws -> Int {
        try require(frameSamples > 0, "frame length must be positive, got \(frameSamples)")
        return Int((samples + Int64(frameSamples) - 1) / Int64(frameSamples))
    }
}

/**
 * Trims the prefix's per-chunk frames to the utterance's true length (ceil(total samples / frame samples) over the
 * concatenated chunks), so that the zero padding of the last chunk never reaches the cloud.
 */
public final class FrameTrimmer {
    public let frameSamples: Int
    private var sentFrames: Int64 = 0
    private var audioSamples: Int64 = 0

    public init(_ frameSamples: Int) {
        self.frameSamples = frameSamples
    }

    /** The frames of `chunk`'s embeddings that carry audio. */
    public func validFrames(_ chunk: Chunk, _ embeddings: Embeddings) throws -> Embeddings {
        audioSamples += Int64(chunk.validSamples)
        if !chunk.isLast {
            sentFrames += Int64(embeddings.frames)
            return embeddings
        }
        let total = Int64(try Chunker.framesFor(audioSamples, frameSamples))
        let keep = Int(max(Int64(0), min(Int64(embeddings.frames), total - sentFrames)))
        sentFrames += Int64(keep)
        return try embeddings.firstFrames(keep)
    }
}
