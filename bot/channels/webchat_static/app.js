// Web chat of the school assistant. No framework, no external resources.
// Untrusted text is never given to innerHTML: messages are built node by node; bot messages may
// carry the safe-HTML subset <b>, <i>, <code>, <br> (everything else shows as text).
"use strict";

(() => {
  const app = document.getElementById("app");
  const toastBox = document.getElementById("toast");
  let S = {};                      // UI strings, translated on the server
  let config = { password: false };
  let chat = null;                 // { personId, rev, nodes: Map(id -> {rev, node}), ws, retry, closed }

  // -- small helpers ------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function eventId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  let toastTimer = null;
  function toast(text) {
    toastBox.textContent = text;
    toastBox.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toastBox.hidden = true; }, 4000);
  }

  async function api(path, body) {
    const options = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = {};
    try { data = await response.json(); } catch (_) { data = {}; }
    return { status: response.status, data };
  }

  // -- safe HTML subset -----------------------------------------------------------------------
  const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: "\"", apos: "'", nbsp: "\u00a0" };

  function decodeEntities(text) {
    return text.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});/gi, (match, name) => {
      if (name[0] === "#") {
        const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : match;
      }
      const value = ENTITIES[name.toLowerCase()];
      return value === undefined ? match : value;
    });
  }

  function appendText(parent, raw) {
    const parts = decodeEntities(raw).split("\n");
    parts.forEach((part, index) => {
      if (index > 0) parent.appendChild(document.createElement("br"));
      if (part) parent.appendChild(document.createTextNode(part));
    });
  }

  function renderSafe(text, parent) {
    const tag = /<(\/?)(b|i|code|br)\s*\/?>/gi;
    const stack = [parent];
    let last = 0;
    let match;
    while ((match = tag.exec(text)) !== null) {
      appendText(stack[stack.length - 1], text.slice(last, match.index));
      last = tag.lastIndex;
      const name = match[2].toLowerCase();
      const top = stack[stack.length - 1];
      if (name === "br") {
        top.appendChild(document.createElement("br"));
      } else if (match[1]) {
        if (stack.length > 1 && top.tagName.toLowerCase() === name) stack.pop();
      } else {
        const node = document.createElement(name);
        top.appendChild(node);
        stack.push(node);
      }
    }
    appendText(stack[stack.length - 1], text.slice(last));
  }

  // -- login ----------------------------------------------------------------------------------
  function showLogin(error) {
    clear(app);
    const input = el("input", { type: "password", id: "password", autocomplete: "current-password",
      "aria-label": S.password, placeholder: S.password, required: true });
    const form = el("form", { className: "login", onsubmit: async (event) => {
      event.preventDefault();
      const { status, data } = await api("/web/api/login", { password: input.value });
      if (status === 200 && data.ok) { route(); return; }
      showLogin(data.error || S.bad_password);
    } },
    el("h1", { text: S.title }),
    el("p", { text: S.login_title }),
    error ? el("p", { className: "error", text: error }) : null,
    input,
    el("button", { type: "submit", className: "primary", text: S.login }));
    app.appendChild(form);
    input.focus();
  }

  // -- picking a person -------------------------------------------------------------------------
  async function showPicker() {
    closeChat();
    const { status, data } = await api("/web/api/people");
    if (status === 401) { showLogin(); return; }
    clear(app);
    const header = el("header", { className: "bar" }, el("h1", { text: S.title }));
    if (config.password) {
      header.appendChild(el("button", { className: "link", text: S.logout, onclick: async () => {
        await api("/web/api/logout", {});
        showLogin();
      } }));
    }
    app.appendChild(header);
    const schools = data.schools || [];
    const body = el("section", { className: "picker" });
    app.appendChild(body);
    if (!schools.length) {
      body.appendChild(el("p", { className: "hint", text: S.none }));
      return;
    }
    const search = el("input", { type: "search", className: "search", placeholder: S.search,
      "aria-label": S.search });
    body.appendChild(el("p", { className: "hint", text: S.pick }));
    body.appendChild(search);
    const items = [];
    for (const school of schools) {
      const list = el("ul", { className: "people" });
      const group = el("div", { className: "school" }, el("h2", { text: school.name }), list);
      for (const person of school.people) {
        const roles = person.roles.join(", ");
        const button = el("button", { className: "person", "data-person-id": person.id,
          onclick: () => { location.hash = "#p" + person.id; } },
        el("span", { className: "name", text: person.name }),
        el("span", { className: "roles", text: roles + (person.unit ? " · " + person.unit : "") }));
        const item = el("li", {}, button);
        item.dataset.search = (person.name + " " + roles + " " + person.unit).toLowerCase();
        items.push(item);
        list.appendChild(item);
      }
      body.appendChild(group);
    }
    search.addEventListener("input", () => {
      const q = search.value.trim().toLowerCase();
      for (const item of items) item.hidden = q !== "" && !item.dataset.search.includes(q);
    });
  }

  // -- the chat -------------------------------------------------------------------------------
  function closeChat() {
    if (chat && chat.ws) {
      chat.closed = true;
      chat.ws.close();
    }
    chat = null;
  }

  function messageNode(change) {
    const node = el("div", { className: "msg " + (change.from === "me" ? "me" : "bot"), "data-id": change.id });
    fillMessage(node, change);
    return node;
  }

  function fillMessage(node, change) {
    clear(node);
    const text = el("div", { className: "text" });
    if (change.from === "me") appendText(text, change.text.replace(/&/g, "&amp;"));
    else renderSafe(change.text || "", text);
    node.appendChild(text);
    const file = change.file;
    if (file) {
      let media;
      if (file.kind === "photo") media = el("img", { src: file.url, alt: file.name, loading: "lazy" });
      else if (file.kind === "video") media = el("video", { src: file.url, controls: true, preload: "metadata" });
      else media = el("a", { href: file.url, download: file.name, text: "📄 " + (file.name || S.open_file) });
      node.appendChild(el("div", { className: "file" }, media));
    }
    for (const row of change.buttons || []) {
      const line = el("div", { className: "row" });
      for (const button of row) {
        line.appendChild(el("button", { type: "button", className: "btn", text: button.label,
          onclick: () => sendEvent({ payload: button.payload, label: button.label }) }));
      }
      node.appendChild(line);
    }
  }

  function applyChanges(rev, changes, boot) {
    if (!chat) return;
    if (boot && chat.boot !== boot) {
      // The server restarted: its revisions start again (message ids never repeat).
      const restarted = chat.boot !== null;
      chat.boot = boot;
      chat.rev = 0;
      if (restarted && chat.ws && chat.ws.readyState === WebSocket.OPEN) {
        chat.ws.send(JSON.stringify({ type: "sync", since: 0 }));
      }
    }
    const list = app.querySelector(".messages");
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    let appended = false;
    for (const change of changes || []) {
      const known = chat.nodes.get(change.id);
      if (known && known.rev >= change.rev) continue;
      if (change.deleted) {
        if (known) known.node.remove();
        chat.nodes.delete(change.id);
        continue;
      }
      if (known) {
        fillMessage(known.node, change);
        known.rev = change.rev;
      } else {
        const node = messageNode(change);
        list.appendChild(node);
        chat.nodes.set(change.id, { rev: change.rev, node });
        appended = true;
      }
    }
    if (typeof rev === "number" && rev > chat.rev) chat.rev = rev;
    const empty = list.querySelector(".empty");
    if (empty) empty.hidden = chat.nodes.size > 0;
    if (appended && (nearBottom || changes.length)) list.scrollTop = list.scrollHeight;
  }

  function connect(current) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + "/web/api/ws?person_id=" + current.personId);
    current.ws = ws;
    ws.addEventListener("open", () => {
      current.retry = 0;
      app.querySelector(".offline").hidden = true;
      ws.send(JSON.stringify({ type: "sync", since: current.rev }));
    });
    ws.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (chat !== current) return;
      if (data.type === "changes") applyChanges(data.rev, data.changes, data.boot);
      else if (data.type === "error") toast(data.error || S.error);
    });
    ws.addEventListener("close", () => {
      if (current.closed || chat !== current) return;
      app.querySelector(".offline").hidden = false;
      current.retry = Math.min(current.retry + 1, 10);
      setTimeout(() => { if (chat === current && !current.closed) connect(current); }, 500 * current.retry);
    });
  }

  async function sendEvent(body) {
    if (!chat) return;
    const current = chat;
    const event = Object.assign({ event_id: eventId() }, body);
    if (current.ws && current.ws.readyState === WebSocket.OPEN) {
      current.ws.send(JSON.stringify(Object.assign({ type: "event" }, event)));
      return;
    }
    // No socket: send by POST (retried once with the same id, so it is processed only once).
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const { status, data } = await api("/web/api/send",
          Object.assign({ person_id: current.personId, since: current.rev }, event));
        if (status === 401) { showLogin(); return; }
        if (!data.ok) { toast(data.error || S.error); return; }
        if (chat === current) applyChanges(data.rev, data.changes, data.boot);
        return;
      } catch (_) {
        await new Promise((resolve) => setTimeout(resolve, 800));
      }
    }
    toast(S.error);
  }

  async function showChat(personId) {
    closeChat();
    const { status, data } = await api("/web/api/open", { person_id: personId, event_id: eventId() });
    if (status === 401) { showLogin(); return; }
    if (!data.ok) {
      toast(data.error || S.error);
      location.hash = "";
      return;
    }
    clear(app);
    const person = data.person;
    const current = { personId, rev: 0, boot: null, nodes: new Map(), ws: null, retry: 0, closed: false };
    chat = current;
    const input = el("input", { type: "text", id: "message", autocomplete: "off", enterkeyhint: "send",
      maxlength: 4000, placeholder: S.placeholder, "aria-label": S.placeholder });
    app.appendChild(el("header", { className: "bar chat-bar" },
      el("button", { className: "link back", text: S.back, onclick: () => { location.hash = ""; } }),
      el("div", { className: "who" },
        el("span", { className: "name", text: person.name }),
        el("span", { className: "roles", text: person.roles.join(", ") + (person.unit ? " · " + person.unit : "") }))));
    app.appendChild(el("div", { className: "offline", text: S.offline, hidden: true }));
    app.appendChild(el("section", { className: "messages", "aria-live": "polite" },
      el("p", { className: "empty hint", text: S.empty })));
    app.appendChild(el("form", { className: "composer", onsubmit: (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      sendEvent({ text });
      input.focus();
    } },
    el("button", { type: "button", className: "menu", text: S.menu, onclick: () => sendEvent({ text: "/menu" }) }),
    input,
    el("button", { type: "submit", className: "primary", id: "send", text: S.send })));
    applyChanges(data.rev, data.changes, data.boot);
    connect(current);
    input.focus();
  }

  // -- routing --------------------------------------------------------------------------------
  function route() {
    const match = /^#p(\d{1,11})$/.exec(location.hash);
    if (match) showChat(parseInt(match[1], 10));
    else showPicker();
  }

  async function boot() {
    try {
      const { data } = await api("/web/api/strings");
      S = data.strings || {};
      config = data;
      document.title = S.title || document.title;
      if (data.password && !data.authenticated) { showLogin(); return; }
      route();
    } catch (_) {
      clear(app);
      app.appendChild(el("p", { className: "error", text: "⚠" }));
    }
  }

  window.addEventListener("hashchange", route);
  boot();
})();
