/* The ops dashboard: fetch fresh figures every few seconds and show them in place. Skipped
   while someone is using a control on the page, so a click or a keyboard focus is never lost;
   table boxes keep their sideways scroll. */
(function () {
  "use strict";
  var marker = document.getElementById("as-of");
  var main = document.querySelector("main");
  if (!marker || !main) return;
  var every = parseInt(marker.getAttribute("data-refresh-ms"), 10) || 10000;
  var busy = false;
  main.addEventListener("submit", function () { busy = true; });
  function inUse() {
    var active = document.activeElement;
    return busy || (active && active !== document.body && main.contains(active) &&
      active.matches("button, input, select, textarea, a"));
  }
  function refresh() {
    if (inUse()) { setTimeout(refresh, every); return; }
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh && fresh.querySelector("#as-of") && !inUse()) {
          var scrolls = Array.prototype.map.call(main.querySelectorAll(".table-wrap"),
            function (box) { return box.scrollLeft; });
          main.innerHTML = fresh.innerHTML;
          Array.prototype.forEach.call(main.querySelectorAll(".table-wrap"), function (box, i) {
            box.scrollLeft = scrolls[i] || 0;
          });
        }
        setTimeout(refresh, every);
      })
      .catch(function () { setTimeout(refresh, every * 2); });
  }
  setTimeout(refresh, every);
})();
