// The conversation page: original/translation toggles, translation preview, canned
// responses after "/", the typing signal (contract LIVE), and the composer's tabs (reply,
// private note: the r and n keys, ?compose=reply|note). No inline script (CSP).
(function () {
  "use strict";
  function csrf() { return document.body.dataset.csrf || ""; }

  // The composer's tabs: show one panel, and put the cursor in its text box.
  function openTab(name, focus) {
    var tabs = document.querySelectorAll("[data-tab]");
    if (!tabs.length) return;
    tabs.forEach(function (tab) {
      var on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      var panel = document.getElementById(tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
    if (focus) {
      var box = document.querySelector('[data-tab-panel="' + name + '"] textarea');
      if (box) box.focus();
    }
  }
  var keys = window.heliographKeys = window.heliographKeys || {};
  keys.r = function () { openTab("reply", true); };
  keys.n = function () { openTab("note", true); };
  function start() {
    var composer = document.querySelector("[data-compose]");
    var asked = composer && composer.dataset.compose;
    if (asked) openTab(asked, true);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  document.addEventListener("keydown", function (event) {
    var tab = event.target instanceof Element && event.target.closest("[data-tab]");
    if (!tab || (event.key !== "ArrowLeft" && event.key !== "ArrowRight")) return;
    var other = tab.dataset.tab === "reply" ? "note" : "reply";
    openTab(other, false);
    document.getElementById("tab-" + other).focus();
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var t = event.target;
    if (!(t instanceof Element)) return;
    var tab = t.closest("[data-tab]");
    if (tab) {
      openTab(tab.dataset.tab, true);
      return;
    }
    var one = t.closest("[data-toggle-original]");
    if (one) {
      var box = one.closest("[data-translated]");
      var orig = box.querySelector(".shown-original");
      var tr = box.querySelector(".shown-translation");
      var showing = !orig.hidden;
      orig.hidden = showing; tr.hidden = !showing;
      return;
    }
    if (t.closest("[data-toggle-all-originals]")) {
      var boxes = document.querySelectorAll("[data-translated]");
      var anyHidden = Array.prototype.some.call(boxes, function (b) { return b.querySelector(".shown-original").hidden; });
      boxes.forEach(function (b) {
        b.querySelector(".shown-original").hidden = !anyHidden;
        b.querySelector(".shown-translation").hidden = anyHidden;
      });
      return;
    }
    var pb = t.closest("[data-preview-button]");
    if (pb) {
      var form = pb.closest("form");
      var body = new URLSearchParams();
      body.set("text", form.querySelector("textarea").value);
      fetch(pb.dataset.url, { method: "POST", body: body, headers: { "X-CSRF-Token": csrf() } })
        .then(function (r) { return r.text(); })
        .then(function (html) { form.querySelector("[data-preview]").innerHTML = html; });
      return;
    }
    var pick = t.closest("[data-fill]");
    if (pick) {
      var area = document.getElementById("reply-text");
      area.value = pick.dataset.fill;
      var list = document.querySelector("[data-canned-list]");
      list.hidden = true; list.innerHTML = "";
      area.focus();
    }
  });

  var lastTyping = 0;
  document.addEventListener("input", function (event) {
    var area = event.target;
    if (!(area instanceof HTMLTextAreaElement) || area.id !== "reply-text") return;
    var id = area.dataset.typingSource;
    var list = document.querySelector("[data-canned-list]");
    if (area.value.charAt(0) === "/") {
      var q = area.value.slice(1);
      fetch("/canned/suggest?conversation_id=" + encodeURIComponent(id) + "&q=" + encodeURIComponent(q))
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) { list.innerHTML = html; list.hidden = !html.trim(); });
    } else if (list) {
      list.hidden = true;
    }
    var now = Date.now();
    if (now - lastTyping > 3000) {
      lastTyping = now;
      fetch("/conversations/" + id + "/typing", { method: "POST", headers: { "X-CSRF-Token": csrf() } }).catch(function () {});
    }
  });
})();
