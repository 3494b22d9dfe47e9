/*
 * notifier service worker: shows web-push notifications and opens the article on a click.
 *
 * Two ways to run it, same file:
 *
 * 1. Served by notifier at /sw.js (scope "/") for the subscribe page. The API is on the
 *    worker's own origin.
 * 2. Imported by the news site's own service worker, which runs on the site's origin:
 *
 *      self.NOTIFIER_ORIGIN = "https://notify.example.com";
 *      importScripts(self.NOTIFIER_ORIGIN + "/sw.js");
 *
 *    Inside importScripts() there is no reliable way for this file to learn its own URL
 *    (self.location is the importing worker's URL, and the query string of the imported
 *    URL is invisible), so the site names the notifier origin once, in a global it sets
 *    before importing. The API calls then go cross-origin (CORS).
 *
 * Everything is wrapped in a function so the importing worker's global scope only gains
 * event listeners, never variables.
 */
(function () {
  "use strict";

  var ORIGIN = String(self.NOTIFIER_ORIGIN || self.location.origin).replace(/\/+$/, "");
  var API = ORIGIN + "/api/v1/push";
  var DB_NAME = "notifier-push";
  var STORE = "state";
  var STATE_KEY = "subscription";
  var GENERIC_TITLE = "New article";
  var GENERIC_BODY = "A new article was published. Open it to read more.";

  // ---- small helpers -------------------------------------------------------------------

  function httpUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      var url = new URL(value, self.registration.scope);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function text(value, max) {
    return typeof value === "string" ? value.trim().slice(0, max) : "";
  }

  /** Whatever arrived (JSON, plain text, nothing), turn it into a notification to show. */
  function readPayload(event) {
    var payload = null;
    var raw = "";
    if (event.data) {
      try {
        raw = event.data.text();
        payload = JSON.parse(raw);
      } catch (e) {
        payload = null;
      }
    }
    if (!payload || typeof payload !== "object" || Array.isArray(payload)) {
      // Chrome penalises pushes that show nothing, so show something generic.
      var plain = text(raw, 300);
      return {
        title: GENERIC_TITLE,
        options: {
          body: plain && plain.charAt(0) !== "{" ? plain : GENERIC_BODY,
          data: { notifier: true, url: self.registration.scope, manageUrl: null },
        },
      };
    }
    var options = {
      body: text(payload.body, 1000),
      renotify: false,
      data: {
        notifier: true,
        url: httpUrl(payload.url) || self.registration.scope,
        manageUrl: httpUrl(payload.manageUrl),
      },
    };
    var icon = httpUrl(payload.icon);
    var image = httpUrl(payload.image);
    var tag = text(payload.tag, 200);
    if (icon) options.icon = icon;
    if (image) options.image = image;
    if (tag) options.tag = tag;
    if (typeof payload.timestamp === "number" && isFinite(payload.timestamp)) {
      options.timestamp = payload.timestamp;
    }
    if (options.data.manageUrl) {
      options.actions = [{ action: "manage", title: "Manage notifications" }];
    }
    return { title: text(payload.title, 300) || GENERIC_TITLE, options: options };
  }

  // IndexedDB, shared with the page that subscribed (same origin): {endpoint, categories,
  // applicationServerKey}. Used to resubscribe with the same categories.
  function withStore(mode, work) {
    return new Promise(function (resolve, reject) {
      if (!self.indexedDB) return resolve(undefined);
      var open = self.indexedDB.open(DB_NAME, 1);
      open.onupgradeneeded = function () {
        open.result.createObjectStore(STORE);
      };
      open.onerror = function () {
        reject(open.error);
      };
      open.onsuccess = function () {
        var db = open.result;
        var tx = db.transaction(STORE, mode);
        var request = work(tx.objectStore(STORE));
        tx.oncomplete = function () {
          db.close();
          resolve(request && request.result);
        };
        tx.onerror = tx.onabort = function () {
          db.close();
          reject(tx.error);
        };
      };
    });
  }

  function loadState() {
    return withStore("readonly", function (store) {
      return store.get(STATE_KEY);
    }).catch(function () {
      return undefined;
    });
  }

  function saveState(state) {
    return withStore("readwrite", function (store) {
      return store.put(state, STATE_KEY);
    }).catch(function () {});
  }

  function postJson(path, body) {
    return fetch(API + path, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  }

  function base64UrlToBytes(value) {
    var padded = value.replace(/-/g, "+").replace(/_/g, "/");
    padded += "===".slice((padded.length + 3) % 4);
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function bytesToBase64Url(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // ---- push: always show a notification ---------------------------------------------------

  self.addEventListener("push", function (event) {
    var shown = readPayload(event);
    event.waitUntil(
      self.registration.showNotification(shown.title, shown.options).catch(function () {
        // An option this browser rejects (e.g. a bad image): still show the essentials.
        return self.registration.showNotification(shown.title, {
          body: shown.options.body,
          tag: shown.options.tag,
          data: shown.options.data,
        });
      })
    );
  });

  // ---- click: focus the article if it is open, else open it --------------------------------

  function sameUrl(a, b) {
    try {
      var x = new URL(a);
      var y = new URL(b);
      x.hash = "";
      y.hash = "";
      return x.href === y.href;
    } catch (e) {
      return false;
    }
  }

  function focusOrOpen(url) {
    return self.clients
      .matchAll({ type: "window", includeUncontrolled: true })
      .then(function (windows) {
        for (var i = 0; i < windows.length; i++) {
          if (sameUrl(windows[i].url, url) && "focus" in windows[i]) {
            return windows[i].focus();
          }
        }
        return self.clients.openWindow ? self.clients.openWindow(url) : undefined;
      });
  }

  self.addEventListener("notificationclick", function (event) {
    var data = event.notification.data;
    if (!data || data.notifier !== true) return; // another script's notification
    event.notification.close();
    var url = event.action === "manage" ? data.manageUrl || data.url : data.url;
    event.waitUntil(focusOrOpen(url || self.registration.scope));
  });

  // ---- the push service replaced or expired our subscription -------------------------------
  //
  // Subscribe again with the same key and register the new endpoint with the same
  // categories. Nothing here ever deletes a subscription on the server when something
  // fails: a dead endpoint is pruned by the server when the push service answers 404/410.

  function categoriesFor(state, oldEndpoint) {
    if (state && state.categories && state.categories.length) {
      return Promise.resolve(state.categories);
    }
    if (!oldEndpoint) return Promise.resolve([]);
    return postJson("/subscriptions/lookup", { endpoint: oldEndpoint })
      .then(function (answer) {
        return answer.ok ? answer.json() : { categories: [] };
      })
      .then(function (body) {
        return (body.categories || []).map(function (c) {
          return typeof c === "string" ? c : c.slug;
        });
      })
      .catch(function () {
        return [];
      });
  }

  function applicationServerKey(oldSubscription, state) {
    var key = oldSubscription && oldSubscription.options
      ? oldSubscription.options.applicationServerKey
      : null;
    if (key) return Promise.resolve(key);
    if (state && state.applicationServerKey) {
      return Promise.resolve(base64UrlToBytes(state.applicationServerKey));
    }
    return fetch(API + "/vapid-public-key", { mode: "cors", credentials: "omit" })
      .then(function (answer) {
        if (!answer.ok) throw new Error("no VAPID key: HTTP " + answer.status);
        return answer.json();
      })
      .then(function (body) {
        return base64UrlToBytes(body.publicKey);
      });
  }

  function resubscribe(event) {
    var oldSubscription = event.oldSubscription || null;
    return loadState().then(function (state) {
      var oldEndpoint = (oldSubscription && oldSubscription.endpoint) ||
        (state && state.endpoint) || null;
      return categoriesFor(state, oldEndpoint).then(function (categories) {
        if (!categories.length) return; // we never knew this browser: nothing to restore
        var next = event.newSubscription
          ? Promise.resolve(event.newSubscription)
          : applicationServerKey(oldSubscription, state).then(function (key) {
              return self.registration.pushManager.subscribe({
                userVisibleOnly: true,
                applicationServerKey: key,
              });
            });
        return next.then(function (subscription) {
          return postJson("/subscriptions", {
            subscription: subscription.toJSON(),
            categories: categories,
            // The server retires the old endpoint now instead of waiting for its 410.
            previousEndpoint: oldEndpoint,
          }).then(function (answer) {
            if (!answer.ok) throw new Error("resubscribe refused: HTTP " + answer.status);
            var key = subscription.options && subscription.options.applicationServerKey;
            return saveState({
              endpoint: subscription.endpoint,
              categories: categories,
              applicationServerKey: key
                ? bytesToBase64Url(new Uint8Array(key))
                : state && state.applicationServerKey,
            });
          });
        });
      });
    });
  }

  self.addEventListener("pushsubscriptionchange", function (event) {
    event.waitUntil(
      resubscribe(event).catch(function (error) {
        console.warn("notifier: could not renew the push subscription", error);
      })
    );
  });
})();
