/* mayu dashboard: live panels, local times, confirmations. No framework, no build step.
 *
 * Each element with data-live="URL" is a live panel: every POLL_MS its fragment is fetched
 * with the panel's ETag (If-None-Match); 304 means nothing changed, 200 replaces the panel.
 * Polling pauses while the page is hidden. A 401 (session ended) goes to the login form.
 * <time datetime> elements are shown in local time; those with class "age" as "12 s ago".
 * Forms with data-confirm ask before they submit.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var statusLine = document.getElementById("live-status");
  var loginUrl = document.body.getAttribute("data-login");

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function stamp(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function showTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.title = when.toString();
      el.textContent = el.classList.contains("age") ? age(Date.now() - when) : stamp(when);
    });
  }

  function showStatus(text, ok) {
    if (!statusLine) return;
    statusLine.textContent = text;
    statusLine.className = "live-status " + (ok ? "ok" : "down");
  }

  function watch(panel) {
    var url = panel.getAttribute("data-live");
    var etag = panel.getAttribute("data-etag") || "";

    function poll() {
      var headers = etag ? { "If-None-Match": etag } : {};
      return fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign(loginUrl + "?next=" + encodeURIComponent(window.location.pathname));
            return null;
          }
          if (response.status === 304) return null;
          if (!response.ok) throw new Error("HTTP " + response.status);
          etag = response.headers.get("ETag") || "";
          return response.text();
        })
        .then(function (html) {
          if (typeof html === "string") {
            panel.innerHTML = html;
            panel.setAttribute("data-etag", etag);
          }
          showTimes(panel);
          showStatus("live " + stamp(new Date()), true);
        })
        .catch(function (error) {
          showStatus("not updating: " + error.message, false);
        });
    }

    function tick() {
      var next = document.visibilityState === "visible" ? poll() : Promise.resolve();
      next.then(function () {
        window.setTimeout(tick, POLL_MS);
      });
    }

    window.setTimeout(tick, POLL_MS);
  }

  document.addEventListener("submit", function (event) {
    var text = event.target.getAttribute("data-confirm");
    if (text && !window.confirm(text)) event.preventDefault();
  });

  showTimes(document);
  document.querySelectorAll("[data-live]").forEach(watch);
})();
