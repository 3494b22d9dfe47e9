/* An alert's page: counts per channel refreshed every second until the alert is done. */
(function () {
  "use strict";
  var table = document.getElementById("progress");
  var status = document.getElementById("status");
  if (!table || !status) return;
  var url = table.getAttribute("data-progress-url");
  var done = ["sent", "cancelled", "stopped"];
  function tick() {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        status.textContent = data.status;
        Object.keys(data.progress).forEach(function (channel) {
          var row = table.querySelector('tr[data-channel="' + channel + '"]');
          if (!row) return;
          Object.keys(data.progress[channel]).forEach(function (key) {
            var cell = row.querySelector('td[data-key="' + key + '"]');
            if (cell) cell.textContent = data.progress[channel][key];
          });
        });
        if (data.seconds !== null) {
          document.getElementById("took").textContent = "— took " + data.seconds.toFixed(1) + " s";
        }
        if (done.indexOf(data.status) === -1) setTimeout(tick, 1000);
        else if (document.querySelector("form.card")) location.reload();
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  if (done.indexOf(status.textContent) === -1) setTimeout(tick, 1000);
})();
