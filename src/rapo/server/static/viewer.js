// rapo trace viewer: plain DOM, no build step. Text is always set with textContent (never innerHTML),
// so what agents or users wrote cannot inject markup. The token lives in sessionStorage only.
"use strict";

const state = { token: null, current: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("rapo-token", hash.get("token"));
    hash.delete("token");
    history.replaceState(null, "", location.pathname + location.search + (hash.toString() ? "#" + hash : ""));
  }
  state.token = sessionStorage.getItem("rapo-token");
}

async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) {
    document.getElementById("auth").classList.remove("hidden");
    throw new Error("this server needs a token");
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || (body.error && body.error.message) || res.statusText);
  return body;
}

function setStatus(text) { document.getElementById("status").textContent = text; }
const fmt = (x, d = 2) => (typeof x === "number" ? x.toFixed(d) : "–");

async function loadList() {
  const list = document.getElementById("conversations");
  let data;
  try {  // the newest 200 (the API pages oldest first)
    const total = (await api("/conversations?limit=1")).total;
    data = await api(`/conversations?offset=${Math.max(0, total - 200)}&limit=200`);
  } catch (e) { setStatus(e.message); return; }
  list.replaceChildren(...data.conversations.slice().reverse().map((c) =>
    el("li", { class: c.id === state.current ? "active" : "", "data-id": c.id, onclick: () => openConversation(c.id) },
      el("span", { class: "cid", text: (c.title ? c.title + " · " : "") + c.id + " · " + c.turns + " turns" + (c.origin === "openai" ? " · openai" : "") }),
      el("span", { class: "last", text: c.last_text || "(no turns yet)" }))));
  if (!data.conversations.length) list.append(el("li", { class: "last", text: "none yet" }));
}

function scoreBars(routing) {
  const scores = routing.scores;
  const max = Math.max(...scores.map((s) => s.score), 1e-9);
  return el("div", { class: "scores", title: "routing score = capability + context + load + switch" },
    scores.map((s) => el("div", { class: "score" + (s.agent === routing.chosen ? " chosen" : ""),
        title: `${s.agent}: capability ${fmt(s.capability, 3)} (mean ${fmt(s.capability_mean, 3)}), context ${fmt(s.context, 3)}, load ${fmt(s.load, 3)}, switch ${fmt(s.switch, 3)}` },
      el("span", { class: "name", text: s.agent }),
      el("span", { class: "track" }, el("span", { class: "score-bar", style: `display:block;width:${Math.max(0, s.score) / max * 100}%` })),
      el("span", { class: "num", text: fmt(s.score) }))),
    el("div", { class: "hint", text: `confidence ${fmt(routing.confidence, 3)} · ${routing.exploration}` }));
}

function consensusBlock(c) {
  return el("div", { class: "consensus" },
    el("div", { text: `Consensus (${c.triggered_by}), ${c.rounds.length} round${c.rounds.length > 1 ? "s" : ""}, agreement ${Math.round(c.agreement * 100)}%` }),
    c.rounds.map((r, i) => el("div", { class: "round" },
      el("span", { text: `round ${i + 1}` }),
      el("span", { class: "meter" + (r.agreement < 0.6 ? " low" : ""), title: `agreement ${fmt(r.agreement, 3)}` },
        el("span", { style: `width:${Math.round(r.agreement * 100)}%` })),
      Object.entries(r.values).map(([agent, v]) => el("span", { class: "vote" + (agent === r.winner ? " win" : ""),
        text: `${agent}: ${v === null ? "cancelled" : (v || "abstained")}` })),
      r.stopped_early ? el("span", { class: "hint", text: "stopped early" }) : null)));
}

function row(rec) {
  const noted = !rec.routing;
  const details = el("div", { class: "details hidden" },
    el("div", { class: "prompt" }, el("h3", { text: noted ? "No prompt: a statement goes to the ledger" : `Prompt sent to ${rec.agent} (${rec.strategy || "default"} strategy)` }),
      rec.prompt.map((m) => el("div", { class: "msg" }, el("span", { class: "role", text: m.role }), el("pre", { text: m.content })))),
    el("div", { class: "reply" }, el("h3", { text: "Reply" }), el("pre", { text: rec.answer }),
      rec.handoff ? el("div", {}, el("h3", { text: "Handoff note", style: "margin-top:10px" }), el("pre", { text: rec.handoff })) : null,
      rec.error ? el("pre", { text: "error: " + rec.error }) : null));
  const head = el("div", { class: "row-head", onclick: () => details.classList.toggle("hidden"), title: "Click to show the prompt and reply" },
    el("div", { class: "turn-no", text: "#" + rec.turn }),
    el("div", {},
      el("div", { class: "said", text: rec.text }),
      el("div", { class: "answer-line" },
        el("span", { class: "agent" + (noted ? " noted" : ""), text: noted ? "ledger" : rec.agent }),
        noted ? el("span", { text: rec.answer }) : el("span", {}, "answered ", el("span", { class: "value", text: rec.value || "(no value)" })),
        noted ? null : el("span", { class: "caret", text: "▸ prompt & reply" })),
      rec.context.length ? el("div", { class: "chips" }, rec.context.map((c) =>
        el("span", { class: "chip " + c.reason, title: `${c.kind === "passage" ? "passage" : "fact " + c.fact_id} from turn ${c.turn} (${c.speaker || c.source}), score ${fmt(c.score, 3)}` },
          el("span", { class: "why", text: c.reason }), c.text))) : null,
      rec.consensus ? consensusBlock(rec.consensus) : null,
      el("div", { class: "stats" },
        el("span", { text: `${rec.prompt_tokens} prompt + ${rec.output_tokens} output tokens` }),
        el("span", { text: `${rec.calls} call${rec.calls === 1 ? "" : "s"}` }),
        el("span", { text: `model ${fmt(rec.latency_s)} s` }),
        el("span", { text: `rapo ${fmt(rec.overhead_s * 1000, 1)} ms` }))),
    noted ? el("div", { class: "hint", text: "statement: no routing" }) : scoreBars(rec.routing));
  return el("div", { class: "row", "data-turn": String(rec.turn) }, head, details);
}

async function openConversation(id) {
  state.current = id;
  const hash = new URLSearchParams(location.hash.slice(1));
  hash.set("c", id);
  history.replaceState(null, "", "#" + hash);
  let c;
  try {  // the last 500 turns (the API pages a conversation's records)
    const path = "/conversations/" + encodeURIComponent(id);
    c = await api(path + "?limit=500");
    if (c.next_offset !== null) c = await api(`${path}?offset=${c.turns - 500}&limit=500`);
  } catch (e) { setStatus(e.message); return; }
  document.getElementById("empty").classList.add("hidden");
  document.getElementById("conversation").classList.remove("hidden");
  document.getElementById("send").disabled = false;
  document.getElementById("conv-title").textContent = c.title || c.id;
  document.getElementById("conv-meta").textContent = `${c.turns} turns · ${c.origin} · started ${new Date(c.created * 1000).toLocaleString()}`;
  document.getElementById("facts-count").textContent = String(c.facts.length);
  document.getElementById("facts").replaceChildren(...c.facts.map((f) =>
    el("li", { text: `${f.text}  (turn ${f.turn}, ${f.source})` })));
  document.getElementById("rows").replaceChildren(...c.records.map(row));
  for (const li of document.querySelectorAll("#conversations li")) li.classList.toggle("active", li.dataset.id === id);
}

async function send() {
  const text = document.getElementById("turn-text").value.trim();
  if (!text || !state.current) return;
  const button = document.getElementById("send");
  button.disabled = true;
  setStatus("the team is answering…");
  try {
    const r = await api(`/conversations/${encodeURIComponent(state.current)}/turns`, {
      method: "POST", body: JSON.stringify({ text, critical: document.getElementById("turn-critical").checked }) });
    setStatus(r.agent ? `${r.agent} answered: ${r.value || r.answer}` : r.answer);
    document.getElementById("turn-text").value = "";
    await openConversation(state.current);
    await loadList();
  } catch (e) { setStatus(e.message); }
  button.disabled = false;
}

async function main() {
  readToken();
  document.getElementById("token-save").addEventListener("click", () => {
    sessionStorage.setItem("rapo-token", document.getElementById("token").value);
    document.getElementById("token").value = "";
    location.reload();
  });
  document.getElementById("refresh").addEventListener("click", loadList);
  document.getElementById("send").addEventListener("click", send);
  document.getElementById("new-conv").addEventListener("click", async () => {
    try { const c = await api("/conversations", { method: "POST", body: "{}" }); await loadList(); await openConversation(c.id); }
    catch (e) { setStatus(e.message); }
  });
  fetch("/health").then((r) => r.json()).then((h) => {
    document.getElementById("team").textContent = `team ${h.team}: ${h.agents.join(", ")}`;
  }).catch(() => {});
  await loadList();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("c");
  if (wanted) await openConversation(wanted);
}

main();
