// The customer page: confirm a merge; enable "Erase" only once the name is typed.
(function () {
  "use strict";
  function ready() {
    document.querySelectorAll("form.cu-confirm").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm || "")) event.preventDefault();
      });
    });
    document.querySelectorAll("form.cu-erase").forEach(function (form) {
      var input = form.querySelector("input[data-expect]");
      var button = form.querySelector("button[data-erase]");
      if (!input || !button) return;
      var check = function () { button.disabled = input.value.trim() !== input.dataset.expect.trim(); };
      input.addEventListener("input", check);
      check();
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
