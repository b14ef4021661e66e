// Entry point of the FreeNet benchmark app: one window with Run, Results and Settings tabs.
import SwiftUI

@main
struct FreeNetBenchApp: App {
    @StateObject private var model = AppModel()
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
                .onAppear { model.onLaunch() }
        }
        .onChange(of: scenePhase) { _, phase in
            // Coming back to the foreground (e.g. after the laptop's server was restarted) is a
            // good moment to retry reports still waiting for an acknowledgement.
            if phase == .active && !model.isRunning { Task { await model.flush() } }
        }
    }
}
