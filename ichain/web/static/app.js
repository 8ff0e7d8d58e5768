// iChain web page: live fragments over Server-Sent Events (short polling as a fallback) and forms
// posted with fetch; every error the server sends is one line, shown in the form's alert region.
"use strict";
(function () {
  const body = document.body;
  const view = body.dataset.view || "requester";
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams({ view });
  if (params.get("task")) query.set("task", params.get("task"));
  if (params.get("address")) query.set("provider", params.get("address"));
  const dot = document.getElementById("live-dot");
  const pending = {};  // fragments held back while the user is inside them
  // This launch's secret, sent back with every action: no other origin can read it or add the header
  // without a CORS preflight, which the server never grants.
  const tokenMeta = document.querySelector('meta[name="ichain-token"]');
  const token = tokenMeta ? tokenMeta.content : "";

  function setAlert(el, text, ok) {
    if (!el) return;
    el.textContent = text || "";
    el.classList.toggle("ok", !!ok);
  }

  let busy = 0;  // actions in flight: their form must stay in place until they answer

  // Replace a live part unless the keyboard focus is inside it (re-rendering would steal it) or
  // one of its forms is being sent.
  function apply(name, html) {
    if (name === "alert") { setAlert(document.getElementById("live-alert"), html); return; }
    const el = document.querySelector('[data-live-part="' + name + '"]');
    if (!el) return;
    if (el.hasAttribute("data-keep-focus") && (busy > 0 ||
        (el.contains(document.activeElement) && document.activeElement !== document.body))) {
      pending[name] = html;
      return;
    }
    delete pending[name];
    if (el.innerHTML === html) return;
    const before = name === "task" && el.querySelector("#task-status") ? el.querySelector("#task-status").dataset.status : null;
    el.innerHTML = html;
    // Screen readers hear the lifecycle changes, not every progress tick.
    const now = name === "task" && el.querySelector("#task-status") ? el.querySelector("#task-status").dataset.status : null;
    const badge = el.querySelector("#task-badge");
    if (before && now && before !== now && badge) {
      document.getElementById("sr-status").textContent = "Task status: " + badge.textContent;
    }
  }
  function flush() { for (const n of Object.keys(pending)) apply(n, pending[n]); }
  document.addEventListener("focusout", function () { setTimeout(flush, 0); });

  function live(on) { if (dot) dot.classList.toggle("on", on); body.dataset.live = on ? "on" : "off"; }

  let polling = null;
  function poll() {
    fetch("/api/fragments?" + query).then(function (r) { return r.json(); }).then(function (parts) {
      live(true);
      for (const n of Object.keys(parts)) apply(n, parts[n]);
    }).catch(function () { live(false); });
  }
  if (window.EventSource) {
    const es = new EventSource("/api/live?" + query);
    es.onopen = function () { live(true); };
    es.onmessage = function (ev) { const m = JSON.parse(ev.data); apply(m.name, m.html); };
    es.onerror = function () { live(false); };
  } else {
    polling = setInterval(poll, 1500);
  }

  // Where a form's one-line error goes: its own alert, else the first one of its live part
  // (looked up again after an update replaced the part), else the page's.
  function alertFor(form) {
    const current = form && form.id ? document.getElementById(form.id) : form;
    if (current) {
      const own = current.querySelector("[data-form-alert]");
      if (own) return own;
      const part = current.closest("[data-live-part]");
      if (part && part.querySelector("[data-form-alert]")) return part.querySelector("[data-form-alert]");
    }
    return document.getElementById("page-alert");
  }

  // Forms: POST with fetch, show the one-line error or the message, never a trace.
  async function send(url, form, button) {
    if (form && form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    setAlert(alertFor(form), "");
    if (button) button.disabled = true;
    body.setAttribute("aria-busy", "true");
    busy++;
    let data;
    try {
      const r = await fetch(url, { method: "POST", body: form ? new FormData(form) : null,
                                   headers: { "X-IChain-Token": token }, credentials: "same-origin" });
      try { data = await r.json(); } catch (e) { data = { error: "The server answered " + r.status + " " + r.statusText }; }
      if (!r.ok && !data.error) data.error = "Error " + r.status;
    } catch (e) {
      data = { error: "Cannot reach the iChain server: is `ape ichain web` still running?" };
    } finally {
      busy--;
      if (button) button.disabled = false;
      body.removeAttribute("aria-busy");
    }
    if (data.error) {
      flush();  // bring the form's part up to date first, then say what went wrong in it
      const el = alertFor(form);
      setAlert(el, data.error, false);
      el.setAttribute("tabindex", "-1");
      el.focus();  // keyboard users land on the message
      return;
    }
    setAlert(document.getElementById("page-alert"), data.message || "Done", true);
    // Leave the form that was used so the next state's controls can replace it, and tell
    // keyboard and screen-reader users where the result is.
    const heading = document.getElementById("task-h") || document.getElementById("main");
    if (heading) heading.focus(); else if (document.activeElement) document.activeElement.blur();
    if (data.task_id !== undefined && String(data.task_id) !== params.get("task")) {
      location.href = "/?task=" + encodeURIComponent(data.task_id);
      return;
    }
    poll();
  }

  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    const action = form.dataset.action;
    if (!action) return;  // plain GET forms (provider lookup) navigate normally
    ev.preventDefault();
    send(action === "submit" ? form.getAttribute("action") : action, form, form.querySelector("button[type=submit]"));
  });
  document.addEventListener("click", function (ev) {
    const b = ev.target.closest("button[data-post]");
    if (b) { ev.preventDefault(); send(b.dataset.post, null, b); }
  });

  // Grey out the providers that cannot run the chosen task folder (their published hardware against its
  // manifest; the server computes it for every offered folder), with the reason on hover.
  function markProviders() {
    const folder = document.getElementById("folder");
    const select = document.getElementById("provider");
    if (!folder || !select) return;
    for (const opt of select.options) {
      if (!opt.dataset.unfit) continue;
      let unfit = {};
      try { unfit = JSON.parse(opt.dataset.unfit); } catch (e) { unfit = {}; }
      const why = folder.value ? unfit[folder.value] : undefined;
      opt.disabled = !!why;
      opt.classList.toggle("unfit", !!why);
      if (!opt.dataset.label) opt.dataset.label = opt.textContent;
      opt.textContent = why ? opt.dataset.label + " — cannot run it: " + why : opt.dataset.label;
      if (why && opt.selected) select.value = "best";
    }
  }
  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.id === "folder") markProviders();
  });
  markProviders();
})();
