// Device identity and conditions from the web APIs that exist: User-Agent Client Hints, the
// WebGPU adapter, core count, memory hint, battery. No web API tells the thermal state.

export interface GpuInfo {
  adapter: GPUAdapter | null;
  label: string | null; // "vendor / architecture / description"
  software: boolean; // SwiftShader, a fallback adapter, or another software rasterizer
  error: string | null;
}

export interface DeviceFacts {
  device: Record<string, unknown>;
  browser: string;
  userAgent: string;
  battery: { level: number | null; charging: boolean | null } | null;
  notes: Record<string, string>;
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render|warp/i;

export async function probeGpu(): Promise<GpuInfo> {
  if (!('gpu' in navigator) || !navigator.gpu) return { adapter: null, label: null, software: false, error: 'navigator.gpu is missing' };
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { adapter: null, label: null, software: false, error: 'WebGPU returned no adapter' };
    const info = adapter.info;
    const parts = [info.vendor, info.architecture, info.description || info.device].filter((s) => s);
    const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
    const software = fallback || SOFTWARE.test(`${info.vendor} ${info.architecture} ${info.description} ${info.device}`);
    return { adapter, label: parts.join(' / ') || 'unknown WebGPU adapter', software, error: null };
  } catch (e) {
    return { adapter: null, label: null, software: false, error: String(e) };
  }
}

interface UaData {
  platform?: string;
  mobile?: boolean;
  brands?: { brand: string; version: string }[];
  getHighEntropyValues?: (hints: string[]) => Promise<Record<string, unknown>>;
}

function browserFromUa(ua: string): string {
  for (const [re, name] of [[/Edg\/([\d.]+)/, 'Edge'], [/Firefox\/([\d.]+)/, 'Firefox'], [/Chrome\/([\d.]+)/, 'Chrome'],
    [/Version\/([\d.]+).*Safari/, 'Safari']] as [RegExp, string][]) {
    const m = re.exec(ua);
    if (m) return `${name} ${m[1]}`;
  }
  return 'unknown browser';
}

function osFromUa(ua: string): [string, string] {
  let m = /Android ([\d.]+)/.exec(ua);
  if (m) return ['android', m[1]];
  m = /(?:iPhone|CPU) OS ([\d_]+)/.exec(ua);
  if (m) return ['ios', m[1].replace(/_/g, '.')];
  m = /Mac OS X ([\d_.]+)/.exec(ua);
  if (m) return ['macos', m[1].replace(/_/g, '.')];
  if (/Windows/.test(ua)) return ['windows', 'unknown'];
  if (/Linux/.test(ua)) return ['linux', 'unknown'];
  return ['unknown', 'unknown'];
}

export async function deviceFacts(gpu: GpuInfo): Promise<DeviceFacts> {
  const ua = navigator.userAgent;
  const uad = (navigator as Navigator & { userAgentData?: UaData }).userAgentData;
  let hi: Record<string, unknown> = {};
  try {
    hi = (await uad?.getHighEntropyValues?.(['model', 'platformVersion', 'architecture', 'fullVersionList'])) ?? {};
  } catch { /* hints refused: fall back to the UA string */ }
  let [os, osVersion] = osFromUa(ua);
  if (uad?.platform) os = uad.platform.toLowerCase().replace('chrome os', 'chromeos');
  if (typeof hi.platformVersion === 'string' && hi.platformVersion) osVersion = hi.platformVersion;
  const full = (hi.fullVersionList as { brand: string; version: string }[] | undefined) ?? uad?.brands ?? [];
  const brand = full.find((b) => /Chrome|Chromium|Edge|Opera|Samsung/i.test(b.brand) && !/Not/i.test(b.brand) && b.brand !== 'Chromium')
    ?? full.find((b) => !/Not/i.test(b.brand));
  const browser = brand ? `${brand.brand} ${brand.version}` : browserFromUa(ua);
  const model = typeof hi.model === 'string' && hi.model ? hi.model : null;
  const platformName = { android: 'Android', ios: 'iOS', linux: 'Linux', macos: 'macOS', windows: 'Windows' }[os] ?? os;
  const nav = navigator as Navigator & { deviceMemory?: number; getBattery?: () => Promise<{ level: number; charging: boolean }> };
  let battery: DeviceFacts['battery'] = null;
  try {
    if (nav.getBattery) {
      const b = await nav.getBattery();
      battery = { level: Number.isFinite(b.level) ? b.level : null, charging: b.charging };
    }
  } catch { /* no Battery API */ }
  const notes: Record<string, string> = { thermal: 'unknown: no web API tells the thermal state' };
  if (typeof hi.architecture === 'string' && hi.architecture) notes.cpu_architecture = hi.architecture;
  if (nav.deviceMemory) notes.device_memory_hint_gib = String(nav.deviceMemory);
  return {
    device: {
      manufacturer: platformName,
      // UA-CH gives the phone model on Android; desktops and iOS do not tell one
      model: model ?? `${platformName} ${uad?.mobile ? 'phone' : 'device'} (${browser})`,
      soc: gpu.label ? gpu.label.slice(0, 200) : 'unknown',
      os,
      os_version: osVersion || 'unknown',
      memory_bytes: nav.deviceMemory ? Math.round(nav.deviceMemory * 2 ** 30) : null,
      cpu_cores: navigator.hardwareConcurrency || null,
      gpu: gpu.label ? gpu.label.slice(0, 200) : null,
    },
    browser: browser.slice(0, 200),
    userAgent: ua.slice(0, 1000),
    battery,
    notes,
  };
}
