// The inbox page: j/k move the selection, Enter opens, r/n/e reply/note/resolve, / search.
// The list is re-fetched on the live "inbox" event; the selected row stays selected.
(function () {
  "use strict";
  var selectedId = null;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#inbox-list .inbox-row"));
  }
  function select(row) {
    rows().forEach(function (r) { r.setAttribute("aria-selected", r === row ? "true" : "false"); });
    if (!row) return;
    selectedId = row.dataset.id;
    row.focus({ preventScroll: false });
    row.scrollIntoView({ block: "nearest" });
  }
  function current() {
    return document.querySelector('#inbox-list .inbox-row[aria-selected="true"]');
  }
  function move(step) {
    var all = rows();
    if (!all.length) return;
    var i = all.indexOf(current());
    var next = i < 0 ? 0 : Math.min(all.length - 1, Math.max(0, i + step));
    select(all[next]);
  }
  function open(suffix) {
    var row = current();
    if (row) window.location.assign(row.dataset.href + (suffix || ""));
  }
  function resolve() {
    var row = current();
    if (!row) return;
    fetch(row.dataset.href + "/status/resolved", {
      method: "POST",
      headers: { "X-CSRF-Token": document.body.dataset.csrf, "HX-Request": "true" },
      credentials: "same-origin"
    }).then(function () {
      var list = document.getElementById("inbox-list");
      if (list && window.htmx) window.htmx.trigger(list, "sse:inbox");
    });
  }

  var keys = window.heliographKeys = window.heliographKeys || {};
  keys.j = function () { move(1); };
  keys.k = function () { move(-1); };
  keys.Enter = function () { open(""); };
  keys.r = function () { open("?compose=reply"); };
  keys.n = function () { open("?compose=note"); };
  keys.e = resolve;
  keys["/"] = function () {
    var q = document.getElementById("inbox-q");
    if (q) q.focus();
  };

  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("#inbox-list .inbox-row");
    if (row && event.target.tagName !== "A") select(row);
  });
  // After a live refresh, keep the row that was selected.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.target || event.target.id !== "inbox-list" || !selectedId) return;
    var row = document.getElementById("conv-" + selectedId);
    if (row) {
      rows().forEach(function (r) { r.setAttribute("aria-selected", r === row ? "true" : "false"); });
      row.focus({ preventScroll: true });
    }
  });
})();
