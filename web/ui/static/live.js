// Live updates on a page (issue #16): "Maya is replying…" and the typing signal.
// Include with <script src="/static/live.js" defer></script> on a page that has
// <div hx-ext="sse" sse-connect="/live">. It listens on that one SSE connection (htmx's
// sse extension hands us its EventSource in htmx:sseOpen); without one it opens its own.
// - [data-typing-for="<conversation id>"]: shows "<name> is replying…" for 6 s after a
//   typing event from someone else (the server never echoes our own). The text comes from
//   the element's data-typing-text ("{name} is replying…" by default, translated by the page).
// - [data-typing-source="<conversation id>"] (the composer's textarea): while it gets
//   input, POSTs /conversations/<id>/typing at most every 3 s.
// A "reload" event (this page fell too far behind) reloads the page.
(function () {
  "use strict";
  var SHOW_MS = 6000;
  var SEND_EVERY_MS = 3000;
  var timers = {};
  var listening = typeof WeakSet === "function" ? new WeakSet() : null;

  function showTyping(conversationId, name) {
    var nodes = document.querySelectorAll('[data-typing-for="' + conversationId + '"]');
    nodes.forEach(function (node) {
      var template = node.getAttribute("data-typing-text") || "{name} is replying…";
      node.textContent = template.replace("{name}", name);
      node.hidden = false;
      clearTimeout(timers[conversationId]);
      timers[conversationId] = setTimeout(function () {
        node.textContent = "";
        node.hidden = true;
      }, SHOW_MS);
    });
  }

  function listen(source) {
    if (!source || (listening && listening.has(source))) return;
    if (listening) listening.add(source);
    document.querySelectorAll("[data-typing-for]").forEach(function (node) {
      var id = node.getAttribute("data-typing-for");
      source.addEventListener("typing-" + id, function (event) {
        try {
          var data = JSON.parse(event.data);
          showTyping(id, data.name || "");
        } catch (e) {
          /* a malformed event: ignore it */
        }
      });
    });
    source.addEventListener("reload", function () {
      window.location.reload();
    });
  }

  document.addEventListener("htmx:sseOpen", function (event) {
    listen(event.detail && event.detail.source);
  });

  function csrfToken() {
    var fallback = document.body.getAttribute("data-csrf") || "";
    var headers = document.body.getAttribute("hx-headers");
    try {
      return (headers && JSON.parse(headers)["X-CSRF-Token"]) || fallback;
    } catch (e) {
      return fallback;
    }
  }

  var lastSent = {};
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (!target || !target.getAttribute) return;
    var id = target.getAttribute("data-typing-source");
    if (!id) return;
    var now = Date.now();
    if (lastSent[id] && now - lastSent[id] < SEND_EVERY_MS) return;
    lastSent[id] = now;
    fetch("/conversations/" + encodeURIComponent(id) + "/typing", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken() },
    }).catch(function () {
      /* typing is a courtesy: never bother the agent with it */
    });
  });

  // A page with a typing element but no htmx SSE connection opens its own.
  function ownConnection() {
    if (!document.querySelector("[data-typing-for]")) return;
    if (document.querySelector("[sse-connect], [data-sse-connect]")) return;
    if (typeof EventSource === "function") listen(new EventSource("/live"));
  }
  window.heliographLive = { connect: ownConnection, showTyping: showTyping };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ownConnection);
  } else {
    ownConnection();
  }
})();
