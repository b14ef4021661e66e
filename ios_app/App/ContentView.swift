// The three screens: Run (start/cancel, live log), Results (stored reports), Settings.
//
// Results show what the phone measured (median of the raw samples, parity, placement, thermal
// states, upload state); the aggregator's dashboard is where runs are compared.
import BenchCore
import SwiftUI

struct ContentView: View {
    var body: some View {
        TabView {
            RunView().tabItem { Label("Run", systemImage: "speedometer") }
            ResultsView().tabItem { Label("Results", systemImage: "list.bullet.rectangle") }
            SettingsView().tabItem { Label("Settings", systemImage: "gear") }
        }
    }
}

struct RunView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        NavigationStack {
            VStack(alignment: .leading, spacing: 12) {
                HStack {
                    Button(model.isRunning ? "Running…" : "Run benchmark") { model.start() }
                        .buttonStyle(.borderedProminent)
                        .disabled(model.isRunning)
                    if model.isRunning { Button("Cancel", role: .cancel) { model.cancel() } }
                    Spacer()
                    Text("\(model.pendingCount) waiting for upload").font(.footnote).foregroundStyle(.secondary)
                }
                if let error = model.lastError {
                    Text(error).foregroundStyle(.red).font(.callout)
                }
                ScrollViewReader { proxy in
                    List(Array(model.log.enumerated()), id: \.offset) { item in
                        Text(item.element).font(.system(.caption, design: .monospaced)).id(item.offset)
                    }
                    .listStyle(.plain)
                    .onChange(of: model.log.count) { _, count in proxy.scrollTo(count - 1) }
                }
            }
            .padding()
            .navigationTitle("FreeNet Bench")
        }
    }
}

struct ResultsView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        NavigationStack {
            List(model.reports) { entry in
                ReportRow(report: entry.report, state: entry.state)
            }
            .refreshable { await model.flush() }
            .navigationTitle("Results")
            .task { await model.refresh() }
        }
    }
}

struct ReportRow: View {
    let report: BenchReport
    let state: String

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            Text("\(report.model.name) · \(report.model.precision) · \(report.runtime.name) \(report.runtime.accelerator)")
                .font(.headline)
            if report.status == .ok, let median = median(report.timing.samplesMs) {
                Text(String(format: "median %.3f ms over %ld runs", median, report.timing.samplesMs.count))
                if let diff = report.parity?.maxAbsDiff {
                    Text(String(format: "max |Δ| vs reference %.2e", diff)).font(.caption)
                }
                if let placement = report.placement {
                    Text(placement.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + " ops")
                        .font(.caption)
                }
            } else {
                Text(report.error ?? "error").foregroundStyle(.red).font(.caption)
            }
            Text("thermal \(describe(report.thermal.before)) → \(describe(report.thermal.after)) · \(state)")
                .font(.caption2).foregroundStyle(.secondary)
        }
    }

    // Display only; the aggregator computes the statistics that are compared.
    func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func describe(_ reading: ThermalReading) -> String {
        switch reading {
        case .state(let s): return s.rawValue
        case .celsius(let t): return String(format: "%.1f °C", t)
        }
    }
}

struct SettingsView: View {
    @EnvironmentObject var model: AppModel

    private func binding(_ key: BenchSettings.Key) -> Binding<String> {
        Binding(get: { model.stored[key.rawValue] ?? "" }, set: { model.stored[key.rawValue] = $0 })
    }

    var body: some View {
        NavigationStack {
            Form {
                Section {
                    TextField("http://my-mac.local:8787", text: binding(.serverURL))
                        .keyboardType(.URL).textInputAutocapitalization(.never).autocorrectionDisabled()
                    SecureField("device token", text: binding(.token))
                    TextField("bundle id (empty: the only one served)", text: binding(.bundle))
                        .textInputAutocapitalization(.never).autocorrectionDisabled()
                } header: {
                    Text("Aggregator")
                } footer: {
                    Text("Token: `freenet token create --device NAME` on the server. Launch arguments (-serverURL, -token, -bundle, ...) override these fields.")
                }
                Section("Measurement") {
                    LabeledContent("Warm-up runs") { TextField("10", text: binding(.warmups)).keyboardType(.numberPad).multilineTextAlignment(.trailing) }
                    LabeledContent("Timed runs") { TextField("50", text: binding(.runs)).keyboardType(.numberPad).multilineTextAlignment(.trailing) }
                    LabeledContent("Max cool-down (s)") { TextField("300", text: binding(.cooldownMaxSeconds)).keyboardType(.numberPad).multilineTextAlignment(.trailing) }
                    LabeledContent("Rest before each run (s)") { TextField("0", text: binding(.restSeconds)).keyboardType(.numberPad).multilineTextAlignment(.trailing) }
                    TextField("accelerators, e.g. cpu,gpu,ane,all (empty: all)", text: binding(.accelerators))
                        .textInputAutocapitalization(.never).autocorrectionDisabled()
                }
                Section {
                    Button("Check connection") {
                        Task { @MainActor in
                            do {
                                let s = try model.settings()
                                let health = try await AggregatorClient(baseURL: s.serverURL, token: s.token).health()
                                model.append("server ok (schema \(health.schemaVersion ?? "?"))")
                                model.lastError = nil
                            } catch {
                                model.lastError = "\(error)"
                            }
                        }
                    }
                }
            }
            .navigationTitle("Settings")
        }
    }
}
