/* The development mailbox list: check for new mail every few seconds and show it. */
(function () {
  "use strict";
  var status = document.getElementById("mailbox-status");
  if (!status) return;
  var url = status.getAttribute("data-state-url");
  var known = status.getAttribute("data-state");
  var every = parseInt(status.getAttribute("data-poll-ms"), 10) || 2000;
  function check() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.state !== known) {
          status.textContent = "New mail: updating…";
          location.reload();
          return;
        }
        setTimeout(check, every);
      })
      .catch(function () { setTimeout(check, every * 2); });
  }
  setTimeout(check, every);
})();
