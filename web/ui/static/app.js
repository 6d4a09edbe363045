// Heliograph web app: keyboard shortcuts and small helpers (no build step).
(function () {
  "use strict";
  // Shortcuts a page opts into: elements with data-key="j" etc. are clicked/focused.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var typing = target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (typing) return;
    var handler = window.heliographKeys && window.heliographKeys[event.key];
    if (handler) {
      event.preventDefault();
      handler(event);
      return;
    }
    var el = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
    if (el) {
      event.preventDefault();
      if (/^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) el.focus(); else el.click();
    }
  });
  window.heliographKeys = window.heliographKeys || {};
})();
