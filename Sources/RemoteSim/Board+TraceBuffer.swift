extension Board {
    /// Turns new text in the resource table's trace buffer (RSC_TRACE) into console lines in the
    /// trace. Runs when the core halts; call it to see trace-buffer output while the core runs.
    public func collectTraceBuffer() {
        guard let buffer = core.withLock({ $0.processor })?.installedResourceTable?.traceBuffers.first,
              let bytes = try? buffer.mapping.region.readBytes(at: buffer.mapping.offset, count: buffer.length) else { return }
        let text = bytes.prefix { $0 != 0 }
        let lines: [String] = traceBufferRead.withLock { state in
            // The firmware restarted its ring (or wrapped): start over.
            if text.count < state.consumed { state = (0, []) }
            var lines: [String] = []
            for byte in text.dropFirst(state.consumed) {
                if byte == UInt8(ascii: "\n") {
                    lines.append(String(decoding: state.partial, as: UTF8.self))
                    state.partial = []
                } else if byte != UInt8(ascii: "\r") {
                    state.partial.append(byte)
                }
            }
            state.consumed = text.count
            return lines
        }
        for line in lines { trace.record(.console(line, fromTraceBuffer: true)) }
    }
}
