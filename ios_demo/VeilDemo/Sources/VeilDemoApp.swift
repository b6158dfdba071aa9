// The app's entry point (Android: MainActivity.kt's onCreate, onStop and its keep-screen-on flag).
import SwiftUI
import UIKit

@main
struct VeilDemoApp: App {
    @StateObject private var model = SessionModel()
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView(model: model)
                .task {
                    model.refreshExports()
                    model.prepare()
                }
                // the screen stays on while a session runs (auto-lock would send the app to the background)
                .onChange(of: model.running) { UIApplication.shared.isIdleTimerDisabled = model.running }
                // no background audio mode: leaving the app ends the session as interrupted, releasing the
                // microphone and the socket, instead of a session that hangs on a stopped engine
                .onChange(of: scenePhase) {
                    if scenePhase == .background { model.interrupt("the app went to the background") }
                }
        }
    }
}
