/* Copilot web chat widget (docs/widget.md). One file: no dependency, no build step, no CDN.
 *   <script src="{API}/widget.js" data-copilot-id="ID" data-api-base="{API}" async></script>
 * Message text (Markdown from the model, a document or an agent) is rendered by building DOM
 * nodes with createElement and text nodes, never as HTML: markup in it stays text, and links
 * are made only for http(s) and mailto URLs. */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.CopilotWidget) return;
  const COPILOT = script.dataset.copilotId || "";
  const API = (script.dataset.apiBase || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  const KEY = "copilot-widget:" + API + ":" + COPILOT; // sessionStorage and tab-to-tab channel
  const ACTIVE = ["handoff_requested", "agent"]; // the states in which an agent may speak
  const WAIT = 20; // seconds of a long-poll (the API's maximum)
  const PAGE = 100; // messages per page of history
  const TYPING_MS = 6000;
  const SAFE_URL = /^(https?:|mailto:)/i;
  const INLINE = /`([^`\n]+)`|\*\*(\S(?:[^*]*\S)?)\*\*|\*(\S(?:[^*]*\S)?)\*|\[([^\]\n]+)\]\(([^)\s]+)\)|\[(\d{1,3})\]|(https?:\/\/[^\s<>"'()]*[^\s<>"'().,;:!?])/g;
  const SOURCES = /\n\nSources:\n(?:\[\d+\][^\n]*(?:\n|$))+$/; // knowledge.answer.render_sources
  const enc = encodeURIComponent;
  // The copilot's messages that are not answers (no thumbs on them): its system topics.
  const NOT_ANSWERS = new Set(["Greeting", "Thank you", "Goodbye", "Start over", "Escalate", "No match", "Multiple topics matched", "Survey"]);
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const uuid = () =>
    crypto.randomUUID ? crypto.randomUUID() // secure contexts only; else 128 random bits
      : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

  const CSS = `
:host{all:initial}
*{box-sizing:border-box}
.root{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a}
button,textarea{font:inherit}
button{cursor:pointer}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;border:0;border-radius:50%;background:var(--accent);color:var(--on);box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center;padding:0}
.launcher svg{width:28px;height:28px;fill:currentColor}
.launcher img{width:40px;height:40px;border-radius:50%}
.panel{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:380px;max-width:calc(100vw - 40px);height:600px;max-height:calc(100vh - 110px);background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);display:flex;flex-direction:column;overflow:hidden}
.panel[hidden],[hidden]{display:none}
header{background:var(--accent);color:var(--on);display:flex;align-items:center;gap:8px;padding:8px 8px 8px 12px}
header h2{margin:0;font-size:16px;font-weight:600;flex:1}
header img,.av{width:28px;height:28px;border-radius:50%;flex:none}
header :focus-visible{outline-color:var(--on)}
.close{background:none;border:0;color:inherit;font-size:24px;line-height:1;width:40px;height:40px;border-radius:6px}
.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}
.msg{max-width:88%;padding:8px 12px;border-radius:12px;overflow-wrap:anywhere}
.msg p{margin:0 0 .5em}.msg p:last-child{margin:0}
.msg ul,.msg ol{margin:0 0 .5em;padding-left:1.3em}
.msg code{font-family:ui-monospace,monospace;background:#e3e6ea;padding:0 3px;border-radius:3px}
.bot,.agent{align-self:flex-start;background:#f1f3f5;display:flex;flex-direction:column;gap:4px}
.bot.with-av{display:grid;grid-template-columns:28px 1fr;column-gap:8px}
.bot.with-av>:not(.av){grid-column:2}
.customer,.pending{align-self:flex-end;background:var(--accent);color:var(--on);white-space:pre-wrap}
.pending::after{content:" …"}
.system{align-self:center;color:#555;font-size:13px;text-align:center}
.who{font-size:12px;font-weight:600;color:#444}
.msg a,.ref{color:#0b57d0}
.ref{background:none;border:0;padding:0 1px;font-size:.8em;vertical-align:super;line-height:1}
.cites{margin:4px 0 0;padding:4px 0 0 1.4em;font-size:13px;border-top:1px solid #c9ced4}
.cites li{position:relative}
.tip{display:none;pointer-events:none;position:absolute;left:0;bottom:100%;z-index:1;width:min(280px,70vw);background:#1a1a1a;color:#fff;padding:6px 8px;border-radius:6px;font-size:12px;white-space:normal}
.cites li:hover .tip,.cites li:focus-within .tip{display:block}
.quick{display:flex;flex-wrap:wrap;gap:6px;margin-top:4px}
.quick button,.actions button{border:1px solid #5f6368;background:#fff;color:#1a1a1a;border-radius:16px;padding:4px 12px;font-size:13px}
.rate{display:flex;gap:4px;align-items:center;font-size:12px;color:#444}
.rate button{border:1px solid #5f6368;background:#fff;border-radius:12px;padding:0 8px;line-height:22px}
.rate button[aria-pressed=true]{background:var(--accent);color:var(--on);border-color:var(--accent)}
.typing{padding:0 12px 4px;font-size:13px;color:#555;font-style:italic}
.status{padding:2px 12px;font-size:13px;color:#a50e0e}
.status:empty{display:none}
.actions{display:flex;gap:6px;padding:6px 12px 0;flex-wrap:wrap}
form{display:flex;gap:8px;padding:8px 12px 12px;align-items:flex-end}
textarea{flex:1;resize:none;height:42px;max-height:120px;padding:9px 10px;border:1px solid #5f6368;border-radius:8px;color:#1a1a1a;background:#fff}
.send{background:var(--accent);color:var(--on);border:0;border-radius:8px;padding:9px 14px;font-weight:600}
.send:disabled{cursor:progress}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px}
@media (max-width:480px){.panel{inset:0;width:100%;max-width:none;height:100%;max-height:none;border-radius:0}}
@media (prefers-reduced-motion:no-preference){.panel{animation:cw-in .18s ease-out}@keyframes cw-in{from{opacity:0;transform:translateY(8px)}}}`;

  /* ---- DOM: every string goes in as a text node (Element.append), never as markup */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) el.setAttribute(k, v);
    el.append(...kids.filter((kid) => kid != null));
    return el;
  }
  const button = (attrs, label, onclick) => {
    const b = h("button", { type: "button", ...attrs }, label);
    b.addEventListener("click", onclick);
    return b;
  };

  /* ---- safe Markdown: paragraphs, lists, **bold**, *italic*, `code`, links, [n] citations */
  function link(url, label) {
    if (!SAFE_URL.test(url)) return h("span", null, label); // javascript:, data:...: text only
    return h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, label);
  }
  function inline(text, msg) {
    const out = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      out.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1]) out.append(h("code", null, m[1]));
      else if (m[2]) out.append(h("strong", null, inline(m[2], msg)));
      else if (m[3]) out.append(h("em", null, inline(m[3], msg)));
      else if (m[4]) out.append(link(m[5], inline(m[4], msg)));
      else if (m[6]) out.append(citeRef(+m[6], msg) || m[0]);
      else out.append(link(m[7], m[7]));
    }
    out.append(text.slice(last));
    return out;
  }
  function markdown(text, msg) {
    const out = document.createDocumentFragment();
    for (const block of text.replace(/\r\n?/g, "\n").split(/\n\s*\n/)) {
      let para = null, list = null;
      for (const line of block.split("\n")) {
        const item = /^\s*(?:[-*+]|(\d{1,3})[.)])\s+(.*)$/.exec(line);
        const heading = /^#{1,6}\s+(.*)$/.exec(line);
        if (item) {
          const tag = item[1] ? "ol" : "ul";
          if (!list || list.localName !== tag) {
            out.append((list = h(tag, tag === "ol" && item[1] !== "1" ? { start: item[1] } : null)));
          }
          list.append(h("li", null, inline(item[2], msg)));
          para = null;
        } else if (list && /^\s{2,}\S/.test(line)) {
          list.lastChild.append(" ", inline(line.trim(), msg)); // a list item's next line
        } else if (heading) {
          out.append(h("p", null, h("strong", null, inline(heading[1], msg)))); // no page headings
          para = list = null;
        } else if (line.trim()) {
          if (para) para.append(h("br"));
          else out.append((para = h("p")));
          para.append(inline(line, msg));
          list = null;
        }
      }
    }
    return out;
  }
  function citeRef(n, msg) {
    const c = (msg.citations || []).find((x) => x.index === n);
    if (!c) return null;
    return button({ class: "ref", "aria-label": `Source ${n}: ${c.title || c.source}` }, `[${n}]`, (e) =>
      e.target.closest("[data-copilot=message]").querySelector(`[data-index="${n}"] [data-copilot=citation]`)?.focus(),
    );
  }
  function citations(msg) {
    const list = h("ol", { class: "cites", "aria-label": "Sources" });
    for (const c of msg.citations) {
      const tip = `cw-tip-${msg.seq}-${c.index}`;
      const where = [c.section, c.page != null ? "page " + c.page : null].filter(Boolean).join(", ");
      const web = c.url && /^https?:/i.test(c.url);
      // A web page or knowledge-base article links to itself; a file shows its name (it has no
      // public address). Focusable either way, so the snippet shows on keyboard focus too.
      const attrs = web ? { href: c.url, target: "_blank", rel: "noopener noreferrer" } : { tabindex: "0" };
      const label = (web ? c.title || c.url : c.source) + (where ? ` (${where})` : "");
      const a = h("a", { "data-copilot": "citation", "aria-describedby": tip, ...attrs }, label);
      list.append(h("li", { "data-index": c.index, value: c.index }, a, h("span", { id: tip, role: "tooltip", class: "tip" }, c.snippet)));
    }
    return list;
  }

  /* ---- the widget's elements, in an open shadow root (its styles and the page's stay apart) */
  const host = h("div", { id: "copilot-widget" });
  const shadow = host.attachShadow({ mode: "open" });
  const ui = {};
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.append(document.createElementNS(svg.namespaceURI, "path"));
  svg.firstChild.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z");
  ui.launcher = button({ class: "launcher", "data-copilot": "launcher", "aria-expanded": "false", "aria-controls": "cw-panel", "aria-label": "Open chat" }, svg, () => (open ? close() : show()));
  ui.title = h("h2", { id: "cw-title" }, "Chat");
  ui.avatar = h("img", { alt: "", hidden: "" });
  ui.close = button({ class: "close", "data-copilot": "close", "aria-label": "Close chat" }, "×", () => close());
  ui.log = h("div", { class: "log", "data-copilot": "log", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0" });
  ui.typing = h("div", { class: "typing", "data-copilot": "typing", hidden: "" });
  ui.status = h("div", { class: "status", "data-copilot": "status", role: "status" });
  ui.handoff = button({ "data-copilot": "handoff" }, "Talk to a person", () => send("Talk to a person"));
  ui.cancel = button({ "data-copilot": "cancel-handoff", hidden: "" }, "Cancel waiting", () => cancelHandoff());
  ui.startOver = button({ "data-copilot": "start-over" }, "Start over", () => startOver());
  ui.input = h("textarea", { id: "cw-input", "data-copilot": "input", rows: "1", maxlength: "4000", placeholder: "Type your message" });
  ui.label = h("label", { for: "cw-input", class: "sr" }, "Message");
  ui.send = h("button", { type: "submit", class: "send", "data-copilot": "send" }, "Send");
  ui.form = h("form", null, ui.label, ui.input, ui.send);
  ui.panel = h(
    "div",
    { id: "cw-panel", class: "panel", "data-copilot": "panel", role: "dialog", "aria-label": "Chat", hidden: "" },
    h("header", null, ui.avatar, ui.title, ui.close),
    ui.log, ui.typing, ui.status,
    h("div", { class: "actions" }, ui.handoff, ui.cancel, ui.startOver),
    ui.form,
  );
  shadow.append(h("style", null, CSS), h("div", { class: "root" }, ui.launcher, ui.panel));

  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    send(ui.input.value);
  });
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send(ui.input.value);
    }
  });
  ui.panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
  });

  /* ---- state */
  let conv = null; // {id, token, seq (highest seen), state}
  let open = false, botName = "Chat", avatar = null, busy = false, blocked = false, configured = false;
  let starting = null, polling = false, aborter = new AbortController(), typingTimer = 0;
  const seen = new Set();

  const status = (text) => (ui.status.textContent = text || "");
  function save() {
    try {
      sessionStorage.setItem(KEY, JSON.stringify({ conv: conv && { id: conv.id, token: conv.token, seq: conv.seq }, open }));
    } catch {} // storage off (private mode, policy): the chat works, a reload starts over
  }
  function saved() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY)) || {};
    } catch {
      return {};
    }
  }

  /* ---- the chat API */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || "request failed");
      Object.assign(this, { status, code });
    }
  }
  async function api(method, path, { token, body, key, signal } = {}) {
    const headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    if (key) headers["Idempotency-Key"] = key; // a retry of a post is answered, never run twice
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(API + path, { method, headers, body: body && JSON.stringify(body), signal, credentials: "omit" });
      } catch (e) {
        if (e.name === "AbortError" || attempt > 0) throw e.name === "AbortError" ? e : new ApiError(0, "network", e.message);
        await sleep(700); // once: a dropped connection or a cold start
        continue;
      }
      if (res.status === 429 && attempt < 3) {
        const wait = Math.min(Math.max(+res.headers.get("Retry-After") || 2, 1), 60);
        status(`You're going a bit fast: trying again in ${wait} s.`);
        await sleep(wait * 1000);
        status("");
        continue;
      }
      const data = res.status === 204 ? null : await res.json().catch(() => null);
      if (!res.ok) throw new ApiError(res.status, data?.error?.code, data?.error?.message);
      return data;
    }
  }
  // fetch says only "TypeError" both when the network is down and when the API refused this
  // page's origin (CORS). A no-cors request reaches the API in the second case only.
  const reachable = () => fetch(API + "/healthz", { mode: "no-cors", cache: "no-store" }).then(() => true, () => false);
  async function failed(e) {
    if (e.name === "AbortError") return;
    if (e.status === 404) return expired();
    if (e.status === 0) {
      if (!(await reachable())) return status("Can't reach the chat. Check your connection and try again.");
      // The copilot allows this page (its config was read), so a refusal about a conversation
      // means the API does not know it: it cannot name its copilot's origins (expired).
      if (configured && conv) return expired();
      blocked = true;
      controls();
      return status("This chat is not available on this site.");
    }
    status(e.message && e.status < 500 ? e.message : "Something went wrong on our side. Please try again.");
  }

  /* ---- conversation */
  function forget() {
    aborter.abort();
    aborter = new AbortController();
    conv = starting = null;
    seen.clear();
    ui.log.replaceChildren();
    typing(null);
    save();
  }
  function expired() {
    forget();
    status("Your previous conversation has expired. A new one starts when you send a message.");
    controls();
  }
  function ensure() {
    if (conv || blocked) return Promise.resolve(conv);
    starting ||= api("POST", `/copilots/${enc(COPILOT)}/conversations`, { body: {}, key: uuid() })
      .then((r) => {
        conv = { id: r.conversation_id, token: r.token, seq: 0, state: r.state };
        apply(r);
        return conv;
      })
      .catch((e) => failed(e).then(() => null))
      .finally(() => (starting = null));
    return starting;
  }
  async function resume(from) {
    conv = { id: from.id, token: from.token, seq: 0, state: "bot" };
    try {
      for (;;) {
        const page = await api("GET", `/conversations/${enc(conv.id)}/messages?after=${conv.seq}&limit=${PAGE}`, { token: conv.token, signal: aborter.signal });
        apply(page);
        if (page.messages.length < PAGE) break;
      }
    } catch (e) {
      await failed(e);
    }
  }
  function apply(answer) {
    if (!conv || answer.conversation_id !== conv.id) return; // an answer about an older one
    // A turn's answer can arrive after a long-poll brought newer messages (the agent ended the
    // chat meanwhile): its state is then stale, and only its messages count.
    const newest = answer.last_seq ?? Math.max(0, ...answer.messages.map((m) => m.seq));
    const current = newest >= conv.seq;
    for (const m of answer.messages) {
      render(m);
      conv.seq = Math.max(conv.seq, m.seq);
    }
    if (current) conv.state = answer.state;
    save();
    controls();
    if (ACTIVE.includes(conv.state)) poll();
  }
  async function poll() {
    // Long-polls only while an agent may speak (wait for the hand-off, the agent's chat): in
    // the copilot's state every reply comes back with the customer's own message.
    if (polling) return;
    polling = true;
    const mine = conv;
    let backoff = 1;
    try {
      while (conv === mine && ACTIVE.includes(mine.state)) {
        try {
          const page = await api("GET", `/conversations/${enc(mine.id)}/messages?after=${mine.seq}&wait=${WAIT}`, { token: mine.token, signal: aborter.signal });
          if (backoff > 1) status("");
          backoff = 1;
          apply(page);
        } catch (e) {
          if (e.name === "AbortError" || conv !== mine) return;
          if (e.status === 404 || (e.status === 0 && configured && (await reachable()))) return expired();
          status("Reconnecting…");
          await sleep(backoff * 1000);
          backoff = Math.min(backoff * 2, 30);
        }
      }
    } finally {
      polling = false;
    }
  }
  async function send(text) {
    text = text.trim();
    if (!text || busy) return;
    busy = ui.send.disabled = true;
    status("");
    const pending = h("div", { class: "msg pending", "aria-hidden": "true" }, text);
    try {
      if (conv?.state === "ended") forget(); // the agent closed it: the next message starts anew
      const c = await ensure();
      if (!c) return;
      if (ui.input.value.trim() === text) ui.input.value = "";
      ui.log.append(pending);
      scroll();
      apply(await api("POST", `/conversations/${enc(c.id)}/messages`, { token: c.token, body: { text }, key: uuid() }));
    } catch (e) {
      if (!ui.input.value) ui.input.value = text; // not sent: keep what the customer wrote
      await failed(e);
    } finally {
      pending.remove();
      busy = ui.send.disabled = false;
    }
  }
  async function cancelHandoff() {
    if (!conv) return;
    try {
      apply(await api("POST", `/conversations/${enc(conv.id)}/handoff/cancel`, { token: conv.token, key: uuid() }));
    } catch (e) {
      if (e.status === 409) return catchUp(); // it ended meanwhile: show how
      await failed(e);
    }
  }
  function startOver() {
    if (conv && conv.state !== "ended") return send("Start over"); // the copilot confirms first
    forget();
    ensure();
  }
  async function catchUp() {
    if (!conv || polling) return;
    try {
      apply(await api("GET", `/conversations/${enc(conv.id)}/messages?after=${conv.seq}`, { token: conv.token, signal: aborter.signal }));
    } catch (e) {
      await failed(e);
    }
  }

  /* ---- rendering */
  function render(m) {
    if (seen.has(m.seq)) return; // a long-poll and a post may both bring a message
    seen.add(m.seq);
    if (m.event === "agent_typing") return typing(m.text);
    typing(null);
    const role = m.role === "copilot" ? "bot" : m.role;
    const who = { bot: botName, customer: "You", agent: m.author || "Agent", system: "Notice" }[role] || role;
    const el = h("div", { class: "msg " + role, "data-copilot": "message", "data-role": role, "data-seq": m.seq }, h("span", { class: "sr" }, who + ": "));
    if (role === "bot" && avatar) {
      el.classList.add("with-av");
      el.append(h("img", { class: "av", src: avatar, alt: "" }));
    }
    if (role === "agent") el.append(h("div", { class: "who", "aria-hidden": "true" }, who));
    // The customer's own words and notices are plain text; answers and agents write Markdown.
    const plain = role === "customer" || role === "system";
    // An answer's text ends with its plain "Sources:" list (for text-only clients): the widget
    // shows the sources as links instead, so it leaves that list out.
    const text = m.citations?.length ? (m.text || "").replace(SOURCES, "") : m.text || "";
    el.append(h("div", { class: "text", "data-copilot": "text" }, plain ? text : markdown(text, m)));
    if (m.citations?.length) el.append(citations(m));
    if (role === "bot" && m.topic && !NOT_ANSWERS.has(m.topic)) el.append(rating(m));
    if (m.suggestions?.length) {
      for (const old of ui.log.querySelectorAll(".quick")) old.remove(); // only the latest apply
      const quick = h("div", { class: "quick", role: "group", "aria-label": "Quick replies" });
      for (const s of m.suggestions) quick.append(button({ "data-copilot": "quick-reply" }, s, () => send(s)));
      el.append(quick);
    } else if (role !== "system") {
      for (const old of ui.log.querySelectorAll(".quick")) old.remove();
    }
    const next = [...ui.log.children].find((x) => +x.dataset.seq > m.seq);
    ui.log.insertBefore(el, next || null);
    scroll();
    window.dispatchEvent(new CustomEvent("copilot:message", { detail: m }));
  }
  // Thumbs up or down on an answer (docs/analytics.md): the last one given counts.
  function rating(m) {
    const group = h("div", { class: "rate", role: "group", "aria-label": "Was this answer helpful?" }, h("span", { "aria-hidden": "true" }, "Helpful?"));
    const give = (value, other) => async (e) => {
      const pressed = e.currentTarget;
      try {
        await api("POST", `/conversations/${enc(conv.id)}/messages/${m.seq}/feedback`, { token: conv.token, body: { rating: value } });
        pressed.setAttribute("aria-pressed", "true");
        other().setAttribute("aria-pressed", "false");
        status("");
      } catch (err) {
        await failed(err);
      }
    };
    const up = button({ "data-copilot": "thumbs-up", "aria-label": "Helpful", "aria-pressed": "false" }, "\u{1F44D}", give("up", () => down));
    const down = button({ "data-copilot": "thumbs-down", "aria-label": "Not helpful", "aria-pressed": "false" }, "\u{1F44E}", give("down", () => up));
    group.append(up, down);
    return group;
  }
  function typing(text) {
    clearTimeout(typingTimer);
    ui.typing.textContent = text || "";
    ui.typing.hidden = !text;
    if (text) typingTimer = setTimeout(typing, TYPING_MS, null);
  }
  function controls() {
    const state = conv?.state || "bot";
    ui.handoff.hidden = state !== "bot";
    ui.cancel.hidden = !ACTIVE.includes(state);
    ui.cancel.textContent = state === "agent" ? "Leave agent chat" : "Cancel waiting";
    ui.startOver.hidden = ACTIVE.includes(state);
    ui.startOver.textContent = state === "ended" ? "New conversation" : "Start over";
    for (const b of [ui.handoff, ui.cancel, ui.startOver, ui.send, ui.input]) b.toggleAttribute("disabled", blocked);
  }
  const scroll = () => (ui.log.scrollTop = ui.log.scrollHeight);

  /* ---- open / close */
  function show() {
    open = true;
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    ui.input.focus();
    scroll();
    save();
    if (!conv) ensure(); // the conversation start message on first open
  }
  function close() {
    if (!open) return;
    open = false;
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.focus();
    save();
  }

  /* ---- appearance */
  function onColor(hex) {
    // Black or white text, whichever contrasts more with the copilot's colour (>= 4.5:1 always).
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#000" : "#fff";
  }
  function theme(color) {
    host.style.setProperty("--accent", color);
    host.style.setProperty("--on", onColor(color));
  }
  async function configure() {
    try {
      const c = await api("GET", `/copilots/${enc(COPILOT)}/widget-config`);
      const look = c.appearance || {};
      botName = c.name;
      if (/^#[0-9a-f]{6}$/i.test(look.color || "")) theme(look.color);
      ui.title.textContent = look.title || c.name;
      ui.panel.setAttribute("aria-label", look.title || "Chat with " + c.name);
      ui.launcher.setAttribute("aria-label", "Open chat with " + c.name);
      ui.label.textContent = "Message " + c.name;
      if (look.avatar_url && /^https:/i.test(look.avatar_url)) {
        avatar = look.avatar_url;
        ui.avatar.src = avatar;
        ui.avatar.hidden = false;
      }
      return (configured = true);
    } catch (e) {
      if (e.status === 404) status("This chat is not set up: unknown copilot.");
      else await failed(e);
      blocked ||= e.status === 404;
      return false;
    }
  }

  /* ---- tabs of the same site share the conversation: sessionStorage is per tab, so a new tab
     asks the open ones (same origin only) for theirs before starting its own */
  const channel = "BroadcastChannel" in window ? new BroadcastChannel(KEY) : null;
  let heard = null;
  if (channel) {
    channel.onmessage = ({ data }) => {
      if (data === "ask" && conv) channel.postMessage({ conv: { id: conv.id, token: conv.token } });
      else if (data?.conv && heard) heard(data.conv);
    };
  }
  const askTabs = () =>
    channel ? new Promise((done) => {
      heard = done;
      channel.postMessage("ask");
      setTimeout(done, 300, null);
    }).finally(() => (heard = null)) : null;

  async function init() {
    theme("#1f6feb");
    controls();
    if (!document.body) await new Promise((done) => addEventListener("DOMContentLoaded", done, { once: true }));
    document.body.append(host);
    const before = saved();
    if (!(await configure())) return;
    const found = before.conv || (await askTabs());
    if (found) await resume(found);
    if (before.open) show();
    document.addEventListener("visibilitychange", () => document.hidden || catchUp()); // another tab may have posted
  }

  window.CopilotWidget = { open: show, close, ready: init() };
})();
