/*
 * "In this browser" on the subscribe page (loaded with defer). It uses the page's one grid of
 * categories, the same the email form sends.
 *
 * On page load it only detects what the browser can do and shows the current state:
 * not supported, blocked, subscribed (found through pushManager.getSubscription() and the
 * lookup API) or off. Permission is asked, the service worker registered and the browser
 * subscribed only when the reader presses the button, and each step says what it waits for.
 */
(function () {
  "use strict";

  var section = document.getElementById("push");
  if (!section) return;

  var API = (section.getAttribute("data-api") || "/api/v1/push").replace(/\/+$/, "");
  var SW_URL = section.getAttribute("data-sw") || "/sw.js";
  var SCOPE = section.getAttribute("data-scope") || "/";
  var TIMEOUT_MS = 30000;

  var ui = {
    state: section.querySelector("[data-push-state]"),
    controls: section.querySelector("[data-push-controls]"),
    live: section.querySelector("[data-push-live]"),
    on: section.querySelector('[data-push-action="subscribe"]'),
    save: section.querySelector('[data-push-action="save"]'),
    off: section.querySelector('[data-push-action="off"]'),
    boxes: Array.prototype.slice.call(
      (section.closest("form") || document).querySelectorAll('input[name="categories"]')
    ),
  };

  // ---- messages ---------------------------------------------------------------------------

  var UNSUPPORTED =
    "This browser cannot show notifications from websites, so browser notifications are " +
    "not available here. Email works everywhere. (On iPhone and iPad, add this site to " +
    "your Home Screen first and open it from there.)";
  var BLOCKED =
    "Notifications are blocked for this site in your browser. To allow them, click the " +
    "icon at the left of the address bar (a lock or sliders), set Notifications to " +
    "\u201cAllow\u201d, then reload this page.";
  var OFF =
    "Browser notifications are off in this browser. Tick categories above and turn them on.";
  var REFUSED =
    "You did not allow notifications, so this browser will not get any. To change your " +
    "mind later, allow notifications for this site in the browser's settings and reload.";
  var STEPS = {
    permission:
      "Asking your browser for permission\u2026 Answer the question it shows near the " +
      "address bar.",
    register: "Registering this browser with its push service\u2026 This can take a few seconds.",
    save: "Saving your categories\u2026",
    off: "Turning browser notifications off\u2026",
  };

  function UserError(message) {
    this.message = message;
  }

  // kind: "error", "progress" (a step under way) or a plain notice.
  function say(message, kind) {
    ui.live.textContent = "";
    if (!message) return;
    var p = document.createElement("p");
    p.className = kind === true || kind === "error" ? "error" : kind || "notice";
    p.textContent = message;
    ui.live.appendChild(p);
  }

  function progress(step) {
    say(STEPS[step], "progress");
  }

  function explain(error) {
    if (error instanceof UserError) return error.message;
    var name = error && error.name;
    if (name === "NotAllowedError") {
      return "Your browser did not allow notifications for this site.";
    }
    if (name === "AbortError" || name === "InvalidStateError") {
      return (
        "Your browser could not reach its push service. Check your connection and try " +
        "again in a minute."
      );
    }
    return "Something went wrong: " + ((error && error.message) || error) + ".";
  }

  // ---- state shown ------------------------------------------------------------------------

  function chosen() {
    return ui.boxes
      .filter(function (box) {
        return box.checked;
      })
      .map(function (box) {
        return box.value;
      });
  }

  function names(categories) {
    return categories
      .map(function (c) {
        return c.name;
      })
      .join(", ");
  }

  function tick(slugs) {
    ui.boxes.forEach(function (box) {
      box.checked = slugs.indexOf(box.value) !== -1;
    });
  }

  function render(state, categories, onLoad) {
    section.hidden = false;
    section.setAttribute("data-state", state);
    ui.controls.hidden = state === "unsupported" || state === "blocked";
    ui.on.hidden = state !== "off";
    ui.save.hidden = ui.off.hidden = state !== "on";
    if (state === "unsupported") ui.state.textContent = UNSUPPORTED;
    else if (state === "blocked") ui.state.textContent = BLOCKED;
    else if (state === "off") ui.state.textContent = OFF;
    else {
      // On page load the grid may already hold what the reader ticked (or what the email
      // form sent back with an error): the browser's categories do not overwrite that.
      if (!onLoad || !chosen().length) {
        tick(
          categories.map(function (c) {
            return c.slug;
          })
        );
      }
      ui.state.textContent =
        "This browser is subscribed to " + names(categories) + ". Change the categories " +
        "above and save, or turn browser notifications off.";
    }
  }

  function busy(on) {
    section.setAttribute("aria-busy", on ? "true" : "false");
    [ui.on, ui.save, ui.off].forEach(function (button) {
      button.disabled = on;
    });
  }

  // ---- browser and server plumbing -----------------------------------------------------

  function supported() {
    return (
      window.isSecureContext !== false &&
      "serviceWorker" in navigator &&
      "PushManager" in window &&
      "Notification" in window
    );
  }

  function withTimeout(promise, message) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        reject(new UserError(message));
      }, TIMEOUT_MS);
      promise.then(
        function (value) {
          clearTimeout(timer);
          resolve(value);
        },
        function (error) {
          clearTimeout(timer);
          reject(error);
        }
      );
    });
  }

  /** The browser's time zone, for quiet hours and the daily push cap (undefined: unknown). */
  function browserZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
    } catch (error) {
      return undefined;
    }
  }

  async function api(method, path, body) {
    var answer;
    try {
      answer = await fetch(API + path, {
        method: method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new UserError("We could not reach the server. Check your connection and try again.");
    }
    if (answer.status === 204) return null;
    var data = null;
    try {
      data = await answer.json();
    } catch (error) {
      data = null;
    }
    if (!answer.ok) {
      var problem = new UserError(
        (data && typeof data.error === "string" && data.error) ||
          "The server could not do that (HTTP " + answer.status + "). Please try again."
      );
      problem.status = answer.status;
      throw problem;
    }
    return data;
  }

  function base64UrlToBytes(value) {
    var padded = value.replace(/-/g, "+").replace(/_/g, "/");
    padded += "===".slice((padded.length + 3) % 4);
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function bytesToBase64Url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function keyOf(subscription) {
    return (subscription.options && subscription.options.applicationServerKey) || null;
  }

  function sameBytes(buffer, bytes) {
    if (!buffer) return true; // the browser does not say: assume it is ours
    var other = new Uint8Array(buffer);
    if (other.length !== bytes.length) return false;
    for (var i = 0; i < bytes.length; i++) if (other[i] !== bytes[i]) return false;
    return true;
  }

  function requestPermission() {
    return new Promise(function (resolve) {
      // Old Safari takes a callback and returns nothing; the others return a promise.
      var result = Notification.requestPermission(resolve);
      if (result && result.then) {
        result.then(resolve, function () {
          resolve(Notification.permission);
        });
      }
    });
  }

  function activated(registration) {
    if (registration.active) return Promise.resolve(registration);
    var worker = registration.installing || registration.waiting;
    return withTimeout(
      new Promise(function (resolve, reject) {
        if (!worker) return reject(new UserError("The notification worker did not start."));
        worker.addEventListener("statechange", function () {
          if (worker.state === "activated") resolve(registration);
          if (worker.state === "redundant") {
            reject(new UserError("The notification worker failed to start. Reload and retry."));
          }
        });
      }),
      "The notification worker did not start in time. Please reload and try again."
    );
  }

  // Shared with the service worker (same origin), so it can renew the subscription with the
  // same categories if the push service replaces it.
  function withStore(mode, work) {
    return new Promise(function (resolve, reject) {
      if (!window.indexedDB) return resolve(undefined);
      var open = indexedDB.open("notifier-push", 1);
      open.onupgradeneeded = function () {
        open.result.createObjectStore("state");
      };
      open.onerror = function () {
        reject(open.error);
      };
      open.onsuccess = function () {
        var db = open.result;
        var tx = db.transaction("state", mode);
        work(tx.objectStore("state"));
        tx.oncomplete = function () {
          db.close();
          resolve();
        };
        tx.onerror = tx.onabort = function () {
          db.close();
          reject(tx.error);
        };
      };
    }).catch(function () {});
  }

  function remember(subscription, categories, key) {
    return withStore("readwrite", function (store) {
      store.put(
        {
          endpoint: subscription.endpoint,
          categories: categories,
          applicationServerKey: key,
        },
        "subscription"
      );
    });
  }

  function forget() {
    return withStore("readwrite", function (store) {
      store.delete("subscription");
    });
  }

  async function currentSubscription() {
    var registration = await navigator.serviceWorker.getRegistration(SCOPE);
    if (!registration) return null;
    return registration.pushManager.getSubscription();
  }

  // ---- what the buttons do ----------------------------------------------------------------

  async function turnOn() {
    var categories = chosen();
    if (!categories.length) {
      say("Tick at least one category first.", true);
      return;
    }
    if (Notification.permission !== "granted") progress("permission");
    var permission = await requestPermission();
    if (permission === "denied") {
      render("blocked");
      say(REFUSED, true);
      return;
    }
    if (permission !== "granted") {
      say(
        "You closed the question without allowing notifications. Press the button again " +
          "when you are ready.",
        true
      );
      return;
    }
    progress("register");
    var registration = await navigator.serviceWorker.register(SW_URL, { scope: SCOPE });
    await activated(registration);
    var publicKey = (await api("GET", "/vapid-public-key")).publicKey;
    var key = base64UrlToBytes(publicKey);
    var subscription = await registration.pushManager.getSubscription();
    var created = false;
    if (subscription && !sameBytes(keyOf(subscription), key)) {
      await subscription.unsubscribe(); // made with a key the server no longer uses
      subscription = null;
    }
    if (!subscription) {
      subscription = await withTimeout(
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        "Your browser's push service did not answer. Please try again in a minute."
      );
      created = true;
    }
    var answer;
    progress("save");
    try {
      answer = await api("POST", "/subscriptions", {
        subscription: subscription.toJSON(),
        categories: categories,
        timezone: browserZone(),
      });
    } catch (error) {
      // The server refused it: do not leave a browser subscription nobody will use.
      if (created && error instanceof UserError && error.status) {
        await subscription.unsubscribe().catch(function () {});
      }
      throw error;
    }
    await remember(subscription, categories, publicKey);
    render("on", answer.categories);
    say(
      "Done: this browser will show a notification for each new article in " +
        names(answer.categories) +
        "."
    );
  }

  async function save() {
    var categories = chosen();
    if (!categories.length) {
      say("Tick at least one category, or turn browser notifications off.", true);
      return;
    }
    var subscription = await currentSubscription();
    if (!subscription) {
      render("off");
      say("This browser is no longer subscribed. Turn notifications on again.", true);
      return;
    }
    progress("save");
    var answer = await api("POST", "/subscriptions", {
      subscription: subscription.toJSON(),
      categories: categories,
    });
    var key = keyOf(subscription);
    await remember(subscription, categories, key ? bytesToBase64Url(key) : null);
    render("on", answer.categories);
    say("Saved.");
  }

  async function turnOff() {
    progress("off");
    var subscription = await currentSubscription();
    if (subscription) {
      // The server first: if that fails the reader can retry, nothing is half done.
      await api("DELETE", "/subscriptions", { endpoint: subscription.endpoint });
      await subscription.unsubscribe().catch(function () {});
    }
    await forget();
    render("off");
    say("Browser notifications are off. You will not get any more from this site here.");
  }

  function action(work) {
    return function () {
      busy(true);
      say("");
      work()
        .catch(function (error) {
          say(explain(error), true);
        })
        .then(function () {
          busy(false);
        });
    };
  }

  // ---- page load: detect and show, nothing more ------------------------------------------

  async function showState() {
    if (!supported()) return render("unsupported");
    if (Notification.permission === "denied") return render("blocked");
    var subscription = await currentSubscription();
    if (!subscription) return render("off");
    try {
      var known = await api("POST", "/subscriptions/lookup", { endpoint: subscription.endpoint });
      render("on", known.categories, true);
    } catch (error) {
      render("off");
      if (!(error instanceof UserError && error.status === 404)) say(explain(error), true);
    }
  }

  ui.on.addEventListener("click", action(turnOn));
  ui.save.addEventListener("click", action(save));
  ui.off.addEventListener("click", action(turnOff));
  showState().catch(function (error) {
    render("off");
    say(explain(error), true);
  });
})();
