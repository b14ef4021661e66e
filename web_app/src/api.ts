// The aggregator's API as the page uses it: pairing, bundle manifest, verified downloads.
import { sha256Hex } from './sha256';

const TOKEN_KEY = 'freenet.device_token';
const DEVICE_KEY = 'freenet.device_name';

export const storedToken = () => localStorage.getItem(TOKEN_KEY);
export const storedDevice = () => localStorage.getItem(DEVICE_KEY);
export function forgetToken(): void { localStorage.removeItem(TOKEN_KEY); localStorage.removeItem(DEVICE_KEY); }

/** Exchange a single-use pairing code for a device token (kept in this browser's storage). */
export async function pair(code: string, deviceName: string): Promise<string> {
  const resp = await fetch('/api/v1/pair', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code, device: deviceName }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(typeof body.detail === 'string' ? body.detail : `pairing failed: HTTP ${resp.status}`);
  localStorage.setItem(TOKEN_KEY, body.token);
  localStorage.setItem(DEVICE_KEY, body.device);
  return body.device;
}

export interface TensorSpec { name: string; shape: number[]; dtype: string; layout: 'NCHW' | 'NHWC' | 'NC' }
export interface Artifact {
  id: string; model: string; model_family: string; format: string; target: string; precision: 'fp32' | 'fp16' | 'int8';
  status: string; file: string | null; sha256: string | null; size_bytes: number | null;
  inputs: TensorSpec[]; outputs: TensorSpec[];
  reference: { input_file: string; output_file: string; input_sha256: string; output_sha256: string } | null;
  macs: number | null; params: number | null;
}
export interface Manifest { bundle_id: string; artifacts: Artifact[] }

export async function bundles(): Promise<string[]> {
  const r = await fetch('/api/v1/bundles');
  if (!r.ok) throw new Error(`GET /api/v1/bundles: HTTP ${r.status}`);
  return (await r.json()).bundles;
}

export async function manifest(bundle: string): Promise<Manifest> {
  const r = await fetch(`/api/v1/bundles/${encodeURIComponent(bundle)}/manifest.json`);
  if (!r.ok) throw new Error(`bundle ${bundle}: manifest HTTP ${r.status}`);
  return r.json();
}

/** Download a bundle file with progress and refuse it unless its sha256 is the manifest's. */
export async function verifiedFile(bundle: string, path: string, sha256: string, onProgress?: (frac: number) => void): Promise<Uint8Array> {
  const r = await fetch(`/api/v1/bundles/${encodeURIComponent(bundle)}/files/${path.split('/').map(encodeURIComponent).join('/')}`);
  if (!r.ok) throw new Error(`download of ${path} failed: HTTP ${r.status}`);
  const total = Number(r.headers.get('content-length')) || 0;
  const parts: Uint8Array[] = [];
  let got = 0;
  const reader = r.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    if (total && onProgress) onProgress(got / total);
  }
  const data = new Uint8Array(got);
  let off = 0;
  for (const p of parts) { data.set(p, off); off += p.length; }
  const actual = await sha256Hex(data);
  if (actual !== sha256) {
    throw new Error(`sha256 mismatch for ${path}: the file has ${actual}, the manifest says ${sha256}; refused, not run`);
  }
  return data;
}
