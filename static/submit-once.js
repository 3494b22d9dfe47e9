/* Forms marked data-submit-once disable their button on submit: a double click sends once. */
(function () {
  "use strict";
  document.querySelectorAll("form[data-submit-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      // After this event: a button disabled while its own submit event runs can cancel it.
      setTimeout(function () {
        form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
      }, 0);
    });
  });
})();
