// The offline report queue: every report is written to IndexedDB first and deleted only after the
// aggregator answered 201 (stored) or 200 (already stored) for its run_id; a 422 moves it aside.
// Flushes go through POST /api/v1/reports/batch, which is idempotent per run_id.

const DB = 'freenet-web-runner';
const QUEUE = 'queue';
const REJECTED = 'rejected';

export type Report = Record<string, unknown> & { run_id: string };

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(QUEUE, { keyPath: 'run_id' });
      req.result.createObjectStore(REJECTED, { keyPath: 'run_id' });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(store: string, mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T> | void): Promise<T | undefined> {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(store, mode);
    const req = f(t.objectStore(store));
    t.oncomplete = () => { db.close(); resolve(req ? req.result : undefined); };
    t.onerror = () => { db.close(); reject(t.error); };
  });
}

export const enqueue = (r: Report) => tx(QUEUE, 'readwrite', (s) => s.put(r));
export const queued = async () => ((await tx(QUEUE, 'readonly', (s) => s.getAll())) ?? []) as Report[];
export const rejected = async () => ((await tx(REJECTED, 'readonly', (s) => s.getAll())) ?? []) as (Report & { _refusal?: unknown })[];
const remove = (id: string) => tx(QUEUE, 'readwrite', (s) => s.delete(id));

export interface FlushResult { sent: number; rejected: number; left: number; error: string | null }

/** Send every queued report (100 per request). Never throws: the error text says why some stay. */
export async function flush(token: string | null): Promise<FlushResult> {
  const items = await queued();
  const res: FlushResult = { sent: 0, rejected: 0, left: items.length, error: null };
  if (!items.length) return res;
  if (!token) return { ...res, error: 'not paired: reports stay queued until this browser has a device token' };
  for (let i = 0; i < items.length; i += 100) {
    const chunk = items.slice(i, i + 100);
    let resp: Response;
    try {
      resp = await fetch('/api/v1/reports/batch', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ reports: chunk }),
      });
    } catch (e) {
      return { ...res, error: `server unreachable (${String(e)}); kept for later` };
    }
    if (resp.status === 401) {
      const body = await resp.json().catch(() => ({}));
      return { ...res, error: `the server refused this browser's token (${body.detail ?? 401}): pair again` };
    }
    if (!resp.ok) return { ...res, error: `server answered ${resp.status}; kept for later` };
    const { results } = (await resp.json()) as { results: { index: number; status: number; detail?: unknown }[] };
    for (const r of results) {
      const item = chunk[r.index];
      if (r.status === 201 || r.status === 200) {
        await remove(item.run_id);
        res.sent++;
      } else if (r.status === 422) {
        await tx(REJECTED, 'readwrite', (s) => s.put({ ...item, _refusal: r.detail }));
        await remove(item.run_id);
        res.rejected++;
      }
    }
  }
  res.left = (await queued()).length;
  return res;
}
