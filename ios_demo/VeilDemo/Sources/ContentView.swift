// The screen (Android: MainActivity.kt with activity_main.xml).
import SwiftUI
import VeilCore

struct ContentView: View {
    @ObservedObject var model: SessionModel

    var body: some View {
        NavigationStack {
            Form {
                Section("Prefix") {
                    Picker("Export", selection: $model.exportIndex) {
                        ForEach(Array(model.exports.enumerated()), id: \.offset) { index, url in
                            Text(url.lastPathComponent).tag(index)
                        }
                    }
                    Picker("Compute units", selection: $model.computeUnits) {
                        ForEach(ComputeUnitsChoice.allCases) { choice in
                            Text(choice.rawValue).tag(choice)
                        }
                    }
                    if !model.modelLine.isEmpty {
                        Text(model.modelLine).font(.footnote).foregroundStyle(.secondary)
                    }
                }
                Section("Server") {
                    TextField("ws://host:8000", text: $model.server)
                        .textInputAutocapitalization(.never)
                        .autocorrectionDisabled()
                        .keyboardType(.URL)
                    SecureField("token (optional)", text: $model.token)
                    Picker("Payload", selection: $model.codec) {
                        ForEach(model.codecs, id: \.self) { codec in
                            Text(codec.wireName).tag(codec)
                        }
                    }
                }
                Section {
                    Button(model.running ? "Stop" : "Start") {
                        if model.running { model.stop() } else { model.start() }
                    }
                    .disabled(model.selectedExport == nil)
                    if !model.status.isEmpty { Text(model.status).font(.footnote) }
                    if let error = model.error { Text(error).foregroundStyle(.red) }
                }
                Section(model.isFinal ? "Final" : "Partial") {
                    Text(model.transcript.isEmpty ? "…" : model.transcript)
                        .fontWeight(model.isFinal ? .semibold : .regular)
                }
                Section("Per chunk") {
                    ForEach(Array(model.chunkLines.enumerated()), id: \.offset) { _, line in
                        Text(line).font(.caption.monospaced())
                    }
                }
            }
            .navigationTitle("Veil")
            .onChange(of: model.exportIndex) { model.prepare() }
            .onChange(of: model.computeUnits) { model.prepare() }
        }
    }
}
