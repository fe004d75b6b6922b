// Trade tape: the latest trades, newest on top, painted at most once per animation frame.

import { fmtPrice, fmtTime, fmtVol, h, t } from "./util.js";

const MAX_ROWS = 40;

export class TradeTape {
  constructor(tbody) {
    this.tbody = tbody;
    this.queue = [];
    this.pending = false;
    this.seen = new Set();
    this.count = 0;
  }

  _row(tr, fresh) {
    const side = tr.side === "BID" ? "bid" : "ask";
    return h(
      "tr",
      { class: `${side === "bid" ? "up" : "down"}${fresh ? " fresh" : ""}` },
      h("td", null, fmtTime(tr.ts)),
      h("td", { class: "num" }, fmtPrice(tr.price)),
      h("td", { class: "num" }, fmtVol(tr.volume)),
      h("td", null, t(side === "bid" ? "buy" : "sell")),
    );
  }

  _key(tr) {
    return tr.sid !== null && tr.sid !== undefined ? `s${tr.sid}` : `${tr.ts}|${tr.price}|${tr.volume}|${tr.side}`;
  }

  /** Replace everything (snapshot): trades oldest first. */
  replace(trades) {
    this.queue = [];
    this.seen = new Set();
    const recent = trades.slice(-MAX_ROWS);
    for (const tr of recent) this.seen.add(this._key(tr));
    const rows = recent.reverse().map((tr) => this._row(tr, false));
    if (rows.length) this.tbody.replaceChildren(...rows);
    else this.tbody.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: 4, class: "muted" }, t("no_data"))));
  }

  /** New trades, oldest first. */
  add(trades) {
    for (const tr of trades) {
      const key = this._key(tr);
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      this.queue.push(tr);
    }
    if (this.seen.size > 1000) this.seen = new Set(Array.from(this.seen).slice(-500));
    if (this.pending || !this.queue.length) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this._flush();
    });
  }

  _flush() {
    const batch = this.queue.splice(0).slice(-MAX_ROWS);
    this.count += batch.length;
    const empty = this.tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(this._row(batch[i], true));
    this.tbody.prepend(frag);
    while (this.tbody.rows.length > MAX_ROWS) this.tbody.lastElementChild.remove();
  }
}
