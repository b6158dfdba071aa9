// The app's entry point (Android: MainActivity.kt's onCreate).
import SwiftUI

@main
struct VeilDemoApp: App {
    @StateObject private var model = SessionModel()

    var body: some Scene {
        WindowGroup {
            ContentView(model: model)
                .task {
                    model.refreshExports()
                    model.prepare()
                }
        }
    }
}
