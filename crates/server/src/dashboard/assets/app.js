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

  // Live parts: one event stream says "something changed"; each part re-fetches itself.
  function refresh(el) {
    var url = new URL(window.location.href);
    url.searchParams.set("_fragment", el.dataset.live);
    el.setAttribute("aria-busy", "true");
    return fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        el.removeAttribute("aria-busy");
        if (html === null) return;
        var active = document.activeElement;
        var keepFocus = active && el.contains(active) && active.id;
        el.innerHTML = html;
        localize(el);
        if (keepFocus) { var again = document.getElementById(keepFocus); if (again) again.focus(); }
      })
      .catch(function () { el.removeAttribute("aria-busy"); });
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
        parts.forEach(refresh);
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
        document.querySelectorAll("[data-live]").forEach(refresh);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    startLive();
    startLogs();
  });
})();
