/*
 * notifier bell for the news site's article pages. No dependencies, no globals.
 *
 *   <script src="https://notify.example.com/widget.js" defer></script>
 *   <div id="notifier-bell" data-categories="opinion,news"></div>   (optional)
 *
 * The notifier origin is the origin this script was loaded from. The bell goes into
 * #notifier-bell, or, without that element, into a fixed button in the bottom corner.
 * The post's categories are pre-selected: data-categories, else the WordPress category
 * links (a[rel~="category"]), else <meta property="article:section">.
 * The site's own service worker (data-sw, default /notifier-sw.js) imports notifier's
 * sw.js; this script registers it and subscribes only when the reader clicks.
 * Options are read from #notifier-bell first, then from the script tag: data-sw,
 * data-categories, data-position ("left" for the bottom-left corner).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.src) return;

  var ORIGIN = new URL(script.src, location.href).origin;
  var API = ORIGIN + "/api/v1";
  var TIMEOUT_MS = 30000;
  var TEXT_SUBSCRIBE =
    "Get real time update about this post categories directly on your device, subscribe now.";

  // ---- helpers ----------------------------------------------------------------------------

  function option(name, mount) {
    var value = mount && mount.getAttribute("data-" + name);
    return value || script.getAttribute("data-" + name) || "";
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (attrs[key] === true) node.setAttribute(key, "");
      else if (attrs[key] !== false && attrs[key] != null) node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function bellIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "notifier-icon");
    var path = document.createElementNS(ns, "path");
    path.setAttribute(
      "d",
      "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5" +
        "a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z"
    );
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  /** Same rule as the server: ASCII letters and digits, everything else becomes "-". */
  function slugify(name) {
    var ascii = name.normalize ? name.normalize("NFKD") : name;
    ascii = ascii.replace(/[^\x00-\x7f]/g, "");
    var slug = ascii.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
    if (!slug) {
      try {
        slug = name.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-+|-+$/g, "");
      } catch (e) {
        slug = "";
      }
    }
    return slug.slice(0, 200);
  }

  /** WordPress's own slug from a category archive link (/category/oil-gas/), if it has one. */
  function hrefSlug(link) {
    try {
      var url = new URL(link.href, location.href);
      if (url.search && /[?&]cat=/.test(url.search)) return "";
      var parts = url.pathname.split("/").filter(Boolean);
      return parts.length ? decodeURIComponent(parts[parts.length - 1]).toLowerCase() : "";
    } catch (e) {
      return "";
    }
  }

  function pretty(slug) {
    var words = slug.replace(/-/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function unique(categories) {
    var seen = {};
    return categories.filter(function (c) {
      if (!c.slug || seen[c.slug]) return false;
      seen[c.slug] = true;
      return true;
    });
  }

  /** The category links of the post in the page: classic themes mark them
   * rel="category tag", block themes (Twenty Twenty-Three) put them in a "taxonomy-category"
   * terms block with rel="tag". The ones inside the post's <article> win, so "related posts"
   * elsewhere on the page do not count. [{slug, name}] in page order. */
  function linkedCategories() {
    var selector = 'a[rel~="category"], .taxonomy-category a[rel~="tag"]';
    var scope = document;
    var inArticle = document.querySelector("article " + selector.replace(", ", ", article "));
    if (inArticle) scope = inArticle.closest("article");
    return Array.prototype.map.call(scope.querySelectorAll(selector), function (a) {
      var name = a.textContent.replace(/\s+/g, " ").trim();
      return { slug: hrefSlug(a) || slugify(name), name: name };
    });
  }

  /** The post's categories: [{slug, name}] in page order. */
  function postCategories(mount) {
    var linked = linkedCategories();
    var listed = option("categories", mount);
    if (listed) {
      var names = {};
      linked.forEach(function (c) {
        names[c.slug] = c.name;
      });
      return unique(
        listed.split(",").map(function (part) {
          var slug = slugify(part.trim());
          return { slug: slug, name: names[slug] || pretty(slug) };
        })
      );
    }
    var found = linked;
    if (!found.length) {
      var metas = document.querySelectorAll('meta[property="article:section"]');
      found = Array.prototype.map.call(metas, function (meta) {
        var name = (meta.getAttribute("content") || "").trim();
        return { slug: slugify(name), name: name };
      });
    }
    return unique(found);
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

  function sameKey(subscription, bytes) {
    var buffer = subscription.options && subscription.options.applicationServerKey;
    if (!buffer) return true;
    return bytesToBase64Url(buffer) === bytesToBase64Url(bytes);
  }

  function UserError(message, status) {
    this.message = message;
    this.status = status;
  }

  function explain(error) {
    if (error instanceof UserError) return error.message;
    if (error && error.name === "NotAllowedError") {
      return "Your browser did not allow notifications for this site.";
    }
    if (error && (error.name === "AbortError" || error.name === "InvalidStateError")) {
      return "Your browser could not reach its push service. Please try again in a minute.";
    }
    return "Something went wrong: " + ((error && error.message) || error) + ".";
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
        mode: "cors",
        credentials: "omit",
        headers: body === undefined
          ? { Accept: "application/json" }
          : { "Content-Type": "application/json", Accept: "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new UserError("The notification service cannot be reached. Please try again later.");
    }
    if (answer.status === 204) return null;
    var data = null;
    try {
      data = await answer.json();
    } catch (error) {
      data = null;
    }
    if (!answer.ok) {
      throw new UserError(
        (data && typeof data.error === "string" && data.error) ||
          "The notification service could not do that (HTTP " + answer.status + ").",
        answer.status
      );
    }
    return data;
  }

  function requestPermission() {
    return new Promise(function (resolve) {
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
            reject(new UserError("The notification worker failed to start."));
          }
        });
      }),
      "The notification worker did not start in time. Please reload and try again."
    );
  }

  // The site's service worker reads this (same origin) to renew the subscription with the
  // same categories if the push service replaces it.
  function store(work) {
    return new Promise(function (resolve, reject) {
      if (!window.indexedDB) return resolve();
      var open = indexedDB.open("notifier-push", 1);
      open.onupgradeneeded = function () {
        open.result.createObjectStore("state");
      };
      open.onerror = function () {
        reject(open.error);
      };
      open.onsuccess = function () {
        var db = open.result;
        var tx = db.transaction("state", "readwrite");
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

  var STYLE = [
    ".notifier-bell{all:initial;display:block;box-sizing:border-box;font:15px/1.45 system-ui,",
    "-apple-system,'Segoe UI',Roboto,sans-serif;color:#111827;margin:16px 0;",
    "--notifier-accent-color:var(--notifier-accent,#b91c1c)}",
    ".notifier-bell *{box-sizing:border-box;font:inherit;color:inherit;letter-spacing:normal;",
    "text-transform:none}",
    ".notifier-bell[hidden],.notifier-bell [hidden]{display:none!important}",
    ".notifier-bell.notifier-floating{position:fixed;bottom:16px;right:16px;margin:0;",
    "z-index:2147483000;display:flex;flex-direction:column;align-items:flex-end;gap:8px}",
    ".notifier-bell.notifier-floating.notifier-left{right:auto;left:16px;align-items:flex-start}",
    ".notifier-bell .notifier-panel{background:#fff;border:1px solid #e5e7eb;",
    "border-radius:10px;padding:12px 14px;max-width:380px}",
    ".notifier-bell.notifier-floating .notifier-panel{box-shadow:0 8px 30px rgba(0,0,0,.18)}",
    ".notifier-bell .notifier-toggle{width:52px;height:52px;border-radius:50%;border:0;",
    "margin:0;padding:13px;background:var(--notifier-accent-color);color:#fff;cursor:pointer;",
    "box-shadow:0 4px 14px rgba(0,0,0,.25)}",
    ".notifier-bell .notifier-icon{width:22px;height:22px;display:inline-block;",
    "vertical-align:middle;flex:none}",
    ".notifier-bell .notifier-button{display:inline-flex;align-items:center;gap:8px;margin:4px",
    " 8px 4px 0;padding:8px 14px;border:1px solid var(--notifier-accent-color);",
    "border-radius:6px;background:var(--notifier-accent-color);color:#fff;cursor:pointer;",
    "text-align:left;line-height:1.3;font-weight:600;width:auto;height:auto;min-height:0}",
    ".notifier-bell .notifier-button.notifier-secondary{background:#fff;",
    "color:var(--notifier-accent-color)}",
    ".notifier-bell .notifier-button:disabled{opacity:.6;cursor:progress}",
    ".notifier-bell .notifier-status{margin:0 0 6px}",
    ".notifier-bell .notifier-categories{margin:6px 0;padding:0;border:0;display:flex;",
    "flex-wrap:wrap;gap:2px 14px}",
    ".notifier-bell .notifier-categories label{display:inline-flex;align-items:center;gap:4px;",
    "margin:0;font-weight:400;cursor:pointer}",
    ".notifier-bell .notifier-categories input{margin:0;width:auto;height:auto;",
    "appearance:auto;position:static;opacity:1}",
    ".notifier-bell .notifier-more summary{cursor:pointer;color:#6b7280;font-size:13px}",
    ".notifier-bell .notifier-live:empty{display:none}",
    ".notifier-bell .notifier-live{margin:6px 0 0;font-size:14px}",
    ".notifier-bell .notifier-live.notifier-error{color:#991b1b}",
  ].join("");

  function addStyle() {
    if (document.getElementById("notifier-bell-style")) return;
    var style = el("style", { id: "notifier-bell-style" });
    style.textContent = STYLE;
    (document.head || document.documentElement).appendChild(style);
  }

  // ---- the bell ---------------------------------------------------------------------------

  function start() {
    if (document.querySelector("[data-notifier-ready]")) return; // loaded twice
    var mount = document.getElementById("notifier-bell");
    var floating = !mount;
    var swUrl = new URL(option("sw", mount) || "/notifier-sw.js", location.href).href;
    var supported =
      window.isSecureContext !== false &&
      "serviceWorker" in navigator &&
      "PushManager" in window &&
      "Notification" in window;
    if (floating) {
      mount = el("div", {});
      document.body.appendChild(mount);
    }
    mount.setAttribute("data-notifier-ready", "");
    mount.classList.add("notifier-bell");
    if (floating) mount.classList.add("notifier-floating");
    if (floating && option("position", null) === "left") mount.classList.add("notifier-left");
    if (!supported) {
      // Nothing this browser can do: keep the article page clean.
      mount.setAttribute("data-state", "unsupported");
      mount.hidden = true;
      return;
    }
    addStyle();

    var post = postCategories(floating ? null : mount);
    var known = null; // all categories from the API, fetched when needed
    var ui = {};
    ui.status = el("p", { class: "notifier-status", hidden: true });
    ui.postBoxes = el("div", { class: "notifier-categories" });
    ui.moreBoxes = el("div", { class: "notifier-categories" });
    ui.more = el("details", { class: "notifier-more" }, [
      el("summary", { text: post.length ? "More categories" : "Choose categories" }),
      ui.moreBoxes,
    ]);
    ui.subscribe = el("button", { type: "button", class: "notifier-button notifier-subscribe" }, [
      bellIcon(),
      el("span", { text: TEXT_SUBSCRIBE }),
    ]);
    ui.save = el("button", { type: "button", class: "notifier-button notifier-save", hidden: true }, [
      "Save categories",
    ]);
    ui.unsubscribe = el(
      "button",
      { type: "button", class: "notifier-button notifier-secondary notifier-unsubscribe", hidden: true },
      ["Unsubscribe"]
    );
    ui.live = el("p", { class: "notifier-live", role: "status", "aria-live": "polite" });
    ui.panel = el("div", { class: "notifier-panel", id: "notifier-panel" }, [
      ui.status,
      ui.subscribe,
      ui.postBoxes,
      ui.more,
      ui.save,
      ui.unsubscribe,
      ui.live,
    ]);
    if (floating) {
      ui.toggle = el("button", {
        type: "button",
        class: "notifier-toggle",
        "aria-expanded": "false",
        "aria-controls": "notifier-panel",
        "aria-label": "Get notifications for new articles",
        title: "Get notifications for new articles",
      }, [bellIcon()]);
      ui.panel.hidden = true;
      ui.toggle.addEventListener("click", function () {
        var open = ui.panel.hidden;
        ui.panel.hidden = !open;
        ui.toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
      mount.appendChild(ui.panel);
      mount.appendChild(ui.toggle);
    } else {
      mount.appendChild(ui.panel);
    }

    function box(category, checked) {
      return el("label", {}, [
        el("input", {
          type: "checkbox",
          class: "notifier-category",
          value: category.slug,
          "data-name": category.name,
          checked: checked,
        }),
        " " + category.name,
      ]);
    }

    post.forEach(function (category) {
      ui.postBoxes.appendChild(box(category, true));
    });
    ui.postBoxes.hidden = !post.length;

    function boxes() {
      return Array.prototype.slice.call(mount.querySelectorAll("input.notifier-category"));
    }

    function loadKnown() {
      if (!known) {
        known = api("GET", "/categories").then(function (list) {
          var have = {};
          boxes().forEach(function (b) {
            have[b.value] = have[b.getAttribute("data-name")] = true;
          });
          list.forEach(function (category) {
            if (!have[category.slug] && !have[category.name]) {
              ui.moreBoxes.appendChild(box(category, false));
            }
          });
          return list;
        });
        known.catch(function () {
          known = null;
        });
      }
      return known;
    }

    ui.more.addEventListener("toggle", function () {
      if (ui.more.open) loadKnown().catch(function (error) {
        say(explain(error), true);
      });
    });

    function say(message, isError) {
      ui.live.textContent = message || "";
      ui.live.classList.toggle("notifier-error", !!isError);
    }

    function render(state, categories) {
      mount.setAttribute("data-state", state);
      ui.subscribe.hidden = state !== "off";
      ui.save.hidden = ui.unsubscribe.hidden = state !== "on";
      ui.postBoxes.hidden = state === "blocked" || (state === "off" && !post.length);
      ui.more.hidden = state === "blocked";
      ui.status.hidden = state === "off";
      if (state === "blocked") {
        ui.status.textContent =
          "Notifications are blocked for this site in your browser. To allow them, click " +
          "the icon at the left of the address bar, set Notifications to \u201cAllow\u201d " +
          "and reload the page.";
      } else if (state === "on") {
        var slugs = categories.map(function (c) {
          return c.slug;
        });
        var have = {};
        boxes().forEach(function (b) {
          have[b.value] = true;
          b.checked = slugs.indexOf(b.value) !== -1;
        });
        categories.forEach(function (c) {
          if (!have[c.slug]) ui.postBoxes.appendChild(box(c, true));
        });
        ui.postBoxes.hidden = false;
        var missing = post.filter(function (c) {
          return slugs.indexOf(c.slug) === -1;
        });
        ui.status.textContent =
          "You get notifications on this device for " +
          categories
            .map(function (c) {
              return c.name;
            })
            .join(", ") +
          "." +
          (missing.length ? " Tick this post's categories and save to add them." : "");
      }
      if (ui.toggle) {
        var label = state === "on" ? "Manage notifications" : "Get notifications for new articles";
        ui.toggle.setAttribute("aria-label", label);
        ui.toggle.setAttribute("title", label);
      }
    }

    function busy(on) {
      mount.setAttribute("aria-busy", on ? "true" : "false");
      [ui.subscribe, ui.save, ui.unsubscribe].forEach(function (b) {
        b.disabled = on;
      });
    }

    async function registration(create) {
      if (create) return navigator.serviceWorker.register(swUrl);
      var all = await navigator.serviceWorker.getRegistrations();
      for (var i = 0; i < all.length; i++) {
        var worker = all[i].active || all[i].waiting || all[i].installing;
        if (worker && worker.scriptURL === swUrl) return all[i];
      }
      return null;
    }

    async function currentSubscription() {
      var found = await registration(false);
      return found ? found.pushManager.getSubscription() : null;
    }

    /** The ticked categories as notifier knows them: by slug, else by the link's name. */
    async function knownChoice() {
      var list = await loadKnown();
      var bySlug = {};
      var byName = {};
      list.forEach(function (c) {
        bySlug[c.slug] = c.slug;
        byName[c.name] = byName[c.name] || c.slug;
      });
      var slugs = boxes()
        .filter(function (b) {
          return b.checked;
        })
        .map(function (b) {
          return bySlug[b.value] || byName[b.getAttribute("data-name")] || "";
        })
        .filter(Boolean);
      return slugs.filter(function (slug, i) {
        return slugs.indexOf(slug) === i;
      });
    }

    async function subscribe() {
      var categories = await knownChoice();
      if (!categories.length) {
        ui.more.open = true;
        say("Choose at least one category first.", true);
        return;
      }
      var permission = await requestPermission();
      if (permission === "denied") return render("blocked");
      if (permission !== "granted") {
        say("Notifications were not allowed. Click again when you are ready.", true);
        return;
      }
      var reg = await registration(true);
      await activated(reg);
      var publicKey = (await api("GET", "/push/vapid-public-key")).publicKey;
      var key = base64UrlToBytes(publicKey);
      var sub = await reg.pushManager.getSubscription();
      var created = false;
      if (sub && !sameKey(sub, key)) {
        await sub.unsubscribe();
        sub = null;
      }
      if (!sub) {
        sub = await withTimeout(
          reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
          "Your browser's push service did not answer. Please try again in a minute."
        );
        created = true;
      }
      var answer;
      try {
        answer = await api("POST", "/push/subscriptions", {
          subscription: sub.toJSON(),
          categories: categories,
          timezone: browserZone(),
        });
      } catch (error) {
        if (created && error instanceof UserError && error.status) {
          await sub.unsubscribe().catch(function () {});
        }
        throw error;
      }
      await store(function (s) {
        s.put({ endpoint: sub.endpoint, categories: categories, applicationServerKey: publicKey },
          "subscription");
      });
      render("on", answer.categories);
      say("Done. You will get a notification for each new article in these categories.");
    }

    async function save() {
      var categories = await knownChoice();
      if (!categories.length) {
        say("Tick at least one category, or unsubscribe.", true);
        return;
      }
      var sub = await currentSubscription();
      if (!sub) {
        render("off");
        say("This device is no longer subscribed. Subscribe again.", true);
        return;
      }
      var answer = await api("POST", "/push/subscriptions", {
        subscription: sub.toJSON(),
        categories: categories,
        timezone: browserZone(),
      });
      await store(function (s) {
        var key = sub.options && sub.options.applicationServerKey;
        s.put({
          endpoint: sub.endpoint,
          categories: categories,
          applicationServerKey: key ? bytesToBase64Url(key) : null,
        }, "subscription");
      });
      render("on", answer.categories);
      say("Saved.");
    }

    async function unsubscribe() {
      var sub = await currentSubscription();
      if (sub) {
        await api("DELETE", "/push/subscriptions", { endpoint: sub.endpoint });
        await sub.unsubscribe().catch(function () {});
      }
      await store(function (s) {
        s.delete("subscription");
      });
      render("off");
      say("Unsubscribed. This device will not get notifications from this site any more.");
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

    ui.subscribe.addEventListener("click", action(subscribe));
    ui.save.addEventListener("click", action(save));
    ui.unsubscribe.addEventListener("click", action(unsubscribe));

    // Page load: show the state; the API is only called if this device is subscribed.
    render("off");
    if (Notification.permission === "denied") {
      render("blocked");
      return;
    }
    currentSubscription()
      .then(function (sub) {
        if (!sub) return;
        return api("POST", "/push/subscriptions/lookup", { endpoint: sub.endpoint }).then(
          function (answer) {
            render("on", answer.categories);
          },
          function (error) {
            if (!(error instanceof UserError && error.status === 404)) throw error;
          }
        );
      })
      .catch(function (error) {
        say(explain(error), true);
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
