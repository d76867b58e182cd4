/**
 * The web-standard WebSocket surface the client needs: exactly what browsers' `WebSocket` global
 * and Node's `ws` package both provide. The constructor is injected, so the same client code runs
 * in both runtimes (and against a fake in tests).
 */

/** The subset of the WHATWG WebSocket the service uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

const OPEN = 1;

/** Event-driven duplex of binary frames: one connection, already open. */
export interface FrameChannel {
  send(frame: Uint8Array): void;
  close(code: number, reason: string): void;
  /** Resolves when the connection is closed, by either side. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Set the receiver of incoming frames (frames that arrive before are queued). */
  onFrame(receiver: (frame: Uint8Array) => void): void;
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    // ws may deliver fragmented messages as Buffer[] when binaryType is 'nodebuffer'
    const parts = data as Uint8Array[];
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
  return null;
}

/** Open a WebSocket and wait until it is open (or fails). */
export function openChannel(WebSocketImpl: WebSocketConstructor, url: string, options: { timeoutMs?: number } = {}): Promise<FrameChannel> {
  return new Promise((resolve, reject) => {
    let ws: WebSocketLike;
    try {
      ws = new WebSocketImpl(url);
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    ws.binaryType = 'arraybuffer';
    const queue: Uint8Array[] = [];
    let receiver: ((frame: Uint8Array) => void) | undefined;
    let opened = false;
    let resolveClosed!: (v: { code: number; reason: string }) => void;
    const closed = new Promise<{ code: number; reason: string }>((r) => (resolveClosed = r));
    const timer = setTimeout(() => {
      if (opened) return;
      try {
        ws.close();
      } catch {
        /* not open yet */
      }
      reject(new Error(`could not connect to ${url} within ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    ws.addEventListener('open', () => {
      opened = true;
      clearTimeout(timer);
      resolve({
        send: (frame) => {
          if (ws.readyState === OPEN) ws.send(frame);
        },
        close: (code, reason) => {
          try {
            ws.close(code, reason);
          } catch {
            ws.close();
          }
        },
        closed,
        onFrame(r) {
          receiver = r;
          for (const f of queue.splice(0)) r(f);
        },
      });
    });
    ws.addEventListener('message', (event) => {
      const bytes = toBytes(event.data);
      if (bytes === null) return; // text frames are not part of the service
      if (receiver) receiver(bytes);
      else queue.push(bytes);
    });
    ws.addEventListener('error', (event) => {
      if (!opened) {
        clearTimeout(timer);
        // ws passes the cause (a refused connection, an HTTP status, a TLS failure); browsers do not.
        const detail = event as { message?: unknown; error?: unknown } | null;
        const message = typeof detail?.message === 'string' && detail.message ? `: ${detail.message}` : '';
        reject(new Error(`could not connect to ${url}${message}`, detail?.error === undefined ? undefined : { cause: detail.error }));
      }
    });
    ws.addEventListener('close', (event) => {
      clearTimeout(timer);
      if (!opened) reject(new Error(`connection to ${url} closed before it opened (${event.code})`));
      resolveClosed({ code: event.code, reason: event.reason });
    });
  });
}
