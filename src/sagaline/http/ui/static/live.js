// sagaline's UI script: live updates of a run's page (server-sent events) and in-place
// confirmation of operator actions. The pages work without it; it never builds markup
// from data: it swaps in parts of a page the server rendered (and escaped) itself.
"use strict";

(function () {
  const run = document.getElementById("run");
  let latest = run ? run.dataset.version : "";

  function busy(section) {
    // Keep a part the operator is typing in; it is refreshed on the next change.
    const active = document.activeElement;
    if (active && section.contains(active) && active !== document.body) return true;
    for (const field of section.querySelectorAll("textarea, input:not([type=hidden])")) {
      if (field.value) return true;
    }
    return section.querySelector(".confirm:not([hidden])") !== null;
  }

  async function refresh(version) {
    const response = await fetch(location.href, { headers: { accept: "text/html" } });
    if (!response.ok || response.redirected) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    let all = true;
    for (const part of fresh.querySelectorAll("[data-live][id]")) {
      const old = document.getElementById(part.id);
      if (!old) continue;
      if (busy(old)) { all = false; continue; }
      old.replaceWith(document.importNode(part, true));
    }
    if (all) run.dataset.version = version;
    wire();
  }

  function result(message, ok) {
    const box = document.getElementById("result");
    const line = document.createElement("p");
    line.className = "flash " + (ok ? "ok" : "bad");
    line.textContent = message;
    box.replaceChildren(line);
  }

  async function submit(form) {
    const body = new URLSearchParams(new FormData(form));
    body.set("confirmed", "yes");
    let outcome;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body,
        headers: { accept: "application/json" },
      });
      outcome = await response.json();
    } catch (error) {
      outcome = { ok: false, message: "the server did not answer: " + error };
    }
    result(outcome.message, outcome.ok);
    if (outcome.ok) form.reset();
    form.querySelector(".confirm").hidden = true;
    form.querySelector("button.act").hidden = false;
    if (document.activeElement) document.activeElement.blur();
    if (run && latest !== run.dataset.version) refresh(latest);
  }

  function wire() {
    for (const form of document.querySelectorAll("form.action:not([data-wired])")) {
      form.dataset.wired = "yes";
      const ask = form.querySelector(".confirm");
      const act = form.querySelector("button.act");
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        ask.hidden = false;
        act.hidden = true;
        ask.querySelector("button.yes").focus();
      });
      ask.querySelector("button.no").addEventListener("click", () => {
        ask.hidden = true;
        act.hidden = false;
      });
      ask.querySelector("button.yes").addEventListener("click", () => submit(form));
    }
  }

  wire();
  if (!run || !window.EventSource) return;
  const source = new EventSource(run.dataset.liveUrl);
  source.addEventListener("change", (event) => {
    latest = JSON.parse(event.data).version;
    if (latest !== run.dataset.version) refresh(latest);
  });
  source.addEventListener("end", () => source.close());
})();
