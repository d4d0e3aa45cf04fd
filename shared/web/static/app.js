// Gatewayz dashboard: copy buttons, spend charts (uPlot) and the streamed playground.
// Text from the gateway is only ever set with textContent: a model's answer is never markup.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
});

function setupCopy() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try { await navigator.clipboard.writeText(field.value); } catch (e) { document.execCommand("copy"); }
      button.textContent = "Copied";
    });
  }
}

const PALETTE = ["#0b57d0", "#b3261e", "#146c2e", "#8430ce", "#b06000", "#007b83", "#5f6368"];

function setupCharts() {
  if (typeof uPlot === "undefined") return;
  const ink = getComputedStyle(document.body).color;
  for (const box of document.querySelectorAll("[data-chart]")) {
    const data = JSON.parse(document.getElementById(box.dataset.chart).textContent);
    if (!data.series.length) { box.textContent = "No spend in this period."; continue; }
    const opts = {
      width: Math.max(280, box.clientWidth), height: 260,
      series: [{}].concat(data.series.map((s, i) => ({
        label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2,
        value: (u, v) => v == null ? "" : "$" + v.toFixed(6),
      }))),
      // uPlot draws on a canvas: its labels take the page's text colour (light or dark) and the
      // y axis room for sub-cent amounts.
      axes: [{ stroke: ink }, { stroke: ink, size: 90, values: (u, vals) => vals.map((v) => "$" + v) }],
    };
    new uPlot(opts, [data.x].concat(data.series.map((s) => s.values)), box);
  }
}

function addMessage(list, role, text) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role;
  const body = document.createElement("span");
  body.className = "content";
  body.textContent = text;
  item.append(label, body);
  list.append(item);
  return body;
}

function setupPlayground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const list = document.getElementById("conversation");
  const meta = document.getElementById("answer-meta");
  const history = [];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = form.message.value;
    if (!message.trim()) return;
    const messages = [];
    if (form.system.value.trim()) messages.push({ role: "system", content: form.system.value });
    history.push({ role: "user", content: message });
    addMessage(list, "user", message);
    form.message.value = "";
    const body = { model: form.model.value, messages: messages.concat(history) };
    if (form.temperature.value) body.temperature = Number(form.temperature.value);
    if (form.max_tokens.value) body.max_tokens = Number(form.max_tokens.value);
    const target = addMessage(list, "assistant", "");
    meta.textContent = "Streaming…";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
        body: JSON.stringify(body),
      });
      const attempts = response.headers.get("x-gatewayz-attempts") || "";
      const served = response.headers.get("x-gatewayz-model") || "";
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        target.textContent = "Error " + response.status + ": " + ((error.error && error.error.message) || response.statusText);
        meta.textContent = attempts ? "Attempts: " + attempts : "";
        history.pop();
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "", answer = "", cost = null, failure = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of frame.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) { failure = chunk.error.message; continue; }
            for (const choice of chunk.choices || []) {
              if (choice.delta && choice.delta.content) { answer += choice.delta.content; target.textContent = answer; }
            }
            if (chunk.usage && chunk.usage.cost != null) cost = chunk.usage.cost;
          }
        }
      }
      if (failure) target.textContent = answer + "\n[stream failed: " + failure + "]";
      history.push({ role: "assistant", content: answer });
      meta.textContent = (served ? "Model: " + served + ". " : "") + (cost != null ? "Cost: $" + cost + ". " : "") + (attempts ? "Attempts: " + attempts : "");
    } catch (error) {
      target.textContent = "The request failed: " + error;
      history.pop();
    } finally {
      button.disabled = false;
    }
  });
}

// Supabase Auth's implicit flow returns the session in the URL fragment (never sent to a server):
// take the access token out of the address bar and history, and post it with the page's CSRF token.
function setupSupabaseCallback() {
  const form = document.getElementById("supabase-session");
  if (!form) return;
  const params = new URLSearchParams(window.location.hash.slice(1));
  history.replaceState(null, "", window.location.pathname);
  const token = params.get("access_token");
  if (token) {
    form.elements.access_token.value = token;
    form.submit();
    return;
  }
  const status = document.getElementById("callback-status");
  status.textContent = (params.get("error_description") || "The sign-in link carried no session.") +
    " Request a new link.";
  status.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopy(); setupCharts(); setupPlayground(); setupSupabaseCallback();
});
