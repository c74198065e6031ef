// Agent OS dashboard: light progressive enhancement. Every page works without this script;
// with it, times read in the viewer's zone, live parts follow the server, and logs tail.
(function () {
  "use strict";
  var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.textContent = fmt.format(d);
      el.dataset.local = "1";
    });
  }

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  // Confirmation for destructive buttons.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // Live parts: one event stream says "something changed"; the page then asks for all of its
  // live parts at once (?_fragment=*, a JSON object of name -> HTML) and swaps them in.
  // What a <details> is about, so one opened by the reader stays open across a refresh.
  function detailsKey(d) {
    var holder = d.closest("[id],[data-event],[data-incident],[data-step],[data-channel]");
    var who = holder ? (holder.id || holder.getAttribute("data-event") || holder.getAttribute("data-incident") ||
      holder.getAttribute("data-step") || holder.getAttribute("data-channel")) : "";
    var summary = d.querySelector("summary");
    return who + "|" + (summary ? summary.textContent : "");
  }

  function refresh() {
    var parts = document.querySelectorAll("[data-live]");
    if (!parts.length) return Promise.resolve();
    var url = new URL(window.location.href);
    url.searchParams.set("_fragment", "*");
    parts.forEach(function (el) { el.setAttribute("aria-busy", "true"); });
    return fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (map) {
        parts.forEach(function (el) {
          el.removeAttribute("aria-busy");
          if (!map || typeof map[el.dataset.live] !== "string") return;
          var active = document.activeElement;
          var keepFocus = active && el.contains(active) && active.id;
          var open = {};
          el.querySelectorAll("details[open]").forEach(function (d) { open[detailsKey(d)] = true; });
          el.innerHTML = map[el.dataset.live];
          el.querySelectorAll("details").forEach(function (d) { if (open[detailsKey(d)]) d.open = true; });
          localize(el);
          if (keepFocus) { var again = document.getElementById(keepFocus); if (again) again.focus(); }
        });
      })
      .catch(function () { parts.forEach(function (el) { el.removeAttribute("aria-busy"); }); });
  }

  function startLive() {
    var parts = document.querySelectorAll("[data-live]");
    if (!parts.length || !window.EventSource) return;
    var pending = null, last = 0;
    var source = new EventSource("/live");
    source.addEventListener("change", function () {
      if (pending) return;
      var wait = Math.max(0, 1000 - (Date.now() - last));
      pending = setTimeout(function () {
        pending = null; last = Date.now();
        refresh();
      }, wait);
    });
  }

  // A run's log, appended as it is written.
  function startLogs() {
    document.querySelectorAll("pre[data-log]").forEach(function (pre) {
      if (!window.EventSource) return;
      var url = pre.dataset.log + "?after=" + (pre.dataset.after || "0");
      var source = new EventSource(url);
      var follow = true;
      pre.addEventListener("scroll", function () {
        follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      });
      source.addEventListener("log", function (e) {
        var c = JSON.parse(e.data);
        var span = document.createElement("span");
        span.className = c.stream;
        span.textContent = c.data;
        pre.appendChild(span);
        var empty = pre.querySelector(".log-empty");
        if (empty) empty.remove();
        if (follow) pre.scrollTop = pre.scrollHeight;
      });
      source.addEventListener("end", function () {
        source.close();
        refresh();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    startLive();
    startLogs();
  });
})();
