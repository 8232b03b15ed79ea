/* Beacon's browser client (placeholder: the real client replaces this file). Served at GET /v1/beacon.js. */
(function (root) {
  "use strict";
  root.Beacon = { version: "0.0.0-placeholder" };
})(typeof window !== "undefined" ? window : globalThis);
