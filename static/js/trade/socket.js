// A WebSocket that reconnects by itself: exponential backoff with jitter, keep-alive pings, an idle
// watchdog, immediate retry when the browser comes back online, and state callbacks for the UI.

const TERMINAL_CLOSE_MIN = 4000; // application close codes 4000-4499: the server refused; do not hammer it
const TERMINAL_CLOSE_MAX = 4499;

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}

/** Delay before attempt `n` (0-based): "equal jitter" around min(max, base * 2^n). */
export function backoffDelay(n, { base = 500, max = 30000, random = Math.random } = {}) {
  const cap = Math.min(max, base * 2 ** Math.min(n, 16));
  return Math.round(cap / 2 + random() * (cap / 2));
}

export class LiveSocket {
  /**
   * @param {() => string} urlFn  URL of the socket (called on every connect: the market may change)
   * @param {{onMessage: Function, onState: Function, onOpen?: Function, pingEvery?: number, idleTimeout?: number,
   *          stopOn?: number[]}} opts  Frames both ways are {"type": ..., "data": ...}; pings are {"type": "ping"}.  stopOn: close codes after which retrying cannot help (4401: the session
   *          is gone; only a new login fixes it), so the socket reports "refused" once and stops.
   */
  constructor(urlFn, opts) {
    this.urlFn = urlFn;
    this.onMessage = opts.onMessage;
    this.onState = opts.onState || (() => {});
    this.onOpen = opts.onOpen || (() => {});
    this.pingEvery = opts.pingEvery ?? 20000;
    this.idleTimeout = opts.idleTimeout ?? 60000;
    this.pingMessage = { type: "ping" }; // one envelope for both sockets: {"type": ..., "data": ...}
    this.stopOn = opts.stopOn || [];
    this.ws = null;
    this.attempt = 0;
    this.state = "idle";
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.connects = 0;
    this.retryAt = 0;
    this._online = () => {
      if (this.state === "reconnecting" || this.state === "offline") this.reconnectNow();
    };
    this._offline = () => {
      if (this.ws) this.ws.close(4999, "offline");
    };
    window.addEventListener("online", this._online);
    window.addEventListener("offline", this._offline);
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    if (navigator.onLine === false) {
      this._setState("offline");
      return;
    }
    this._setState(this.connects === 0 ? "connecting" : "reconnecting", { now: true });
    let ws;
    try {
      ws = new WebSocket(this.urlFn());
    } catch {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.connects += 1;
      this.lastMessageAt = Date.now();
      this._setState("open", { reconnected: this.connects > 1 });
      this._startPing();
      this.onOpen(this.connects > 1);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastMessageAt = Date.now();
      this.attempt = 0; // a working connection resets the backoff
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._stopPing();
      if (this.stopped) return;
      if (this.stopOn.includes(ev.code)) {
        this.stop();
        this._setState("refused", { code: ev.code, reason: ev.reason, final: true });
        return;
      }
      if (ev.code >= TERMINAL_CLOSE_MIN && ev.code <= TERMINAL_CLOSE_MAX) {
        this._setState("refused", { code: ev.code, reason: ev.reason });
        // Still retry, slowly: a login in another tab or a fixed market makes it work again.
        this.attempt = Math.max(this.attempt, 6);
      }
      this._scheduleRetry();
    };
    ws.onerror = () => {
      /* onclose follows and schedules the retry */
    };
  }

  _scheduleRetry() {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    if (this.state !== "refused") this._setState("reconnecting", { delay, retryAt: this.retryAt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  _startPing() {
    this._stopPing();
    if (!this.pingEvery) return;
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastMessageAt > this.idleTimeout) {
        // Half-open connection (no pong, no data): drop it and reconnect.
        ws.close(4998, "idle");
        return;
      }
      this.send(this.pingMessage);
    }, this.pingEvery);
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** Close the current connection and connect again at once (market switch, coming back online). */
  reconnectNow() {
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    const old = this.ws;
    this.ws = null;
    this._stopPing();
    if (old) {
      old.onclose = null;
      old.close(1000, "reconnect");
    }
    this.connect();
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this._stopPing();
    window.removeEventListener("online", this._online);
    window.removeEventListener("offline", this._offline);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
  }
}
