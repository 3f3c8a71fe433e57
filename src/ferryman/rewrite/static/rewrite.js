/* Ferryman: URLs a page builds while it runs, mapped into the route's prefix.
 *
 * Served by the gateway and put first in the <head> of pages it rewrites. A page
 * served under a prefix (/p) that calls fetch("/api/x"), opens
 * new WebSocket("wss://" + location.host + "/ws") or pushes "/settings" onto its
 * history would leave the prefix; these wrappers put it back. URLs already inside the
 * prefix, relative ones and other origins are left alone.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var prefix = script && script.getAttribute("data-prefix");
  if (!prefix || window.__ferrymanPrefix) { return; }
  window.__ferrymanPrefix = prefix;

  function inside(path) {
    return path === prefix || path.indexOf(prefix + "/") === 0 || path.indexOf(prefix + "?") === 0;
  }

  function map(value, schemes) {
    if (value instanceof URL) { value = value.href; }
    if (typeof value !== "string") { return value; }
    if (value.charAt(0) === "/" && value.charAt(1) !== "/") {
      return inside(value) ? value : prefix + value;
    }
    var url;
    try { url = new URL(value, location.href); } catch (e) { return value; }
    if (url.host !== location.host || schemes.indexOf(url.protocol) < 0) { return value; }
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value) && value.slice(0, 2) !== "//") { return value; }
    if (!inside(url.pathname)) { url.pathname = prefix + url.pathname; }
    return url.href;
  }
  var HTTP = ["http:", "https:"];
  var WS = ["ws:", "wss:", "http:", "https:"];

  var fetch = window.fetch;
  if (fetch) {
    window.fetch = function (input, init) {
      if (typeof Request !== "undefined" && input instanceof Request) {
        var mapped = map(input.url, HTTP);
        if (mapped !== input.url) { input = new Request(mapped, input); }
        return fetch.call(this, input, init);
      }
      return fetch.call(this, map(input, HTTP), init);
    };
  }

  var open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    var args = Array.prototype.slice.call(arguments);
    args[1] = map(url, HTTP);
    return open.apply(this, args);
  };

  var Socket = window.WebSocket;
  if (Socket) {
    var Wrapped = function (url, protocols) {
      var mapped = map(url, WS);
      return protocols === undefined ? new Socket(mapped) : new Socket(mapped, protocols);
    };
    Wrapped.prototype = Socket.prototype;
    ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) {
      Wrapped[name] = Socket[name];
    });
    window.WebSocket = Wrapped;
  }

  var Source = window.EventSource;
  if (Source) {
    var WrappedSource = function (url, options) { return new Source(map(url, HTTP), options); };
    WrappedSource.prototype = Source.prototype;
    window.EventSource = WrappedSource;
  }

  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function (state, title, url) {
      return url === undefined || url === null
        ? original.call(this, state, title)
        : original.call(this, state, title, map(url, HTTP));
    };
  });
})();
