/* upscale-relay console: the few behaviours htmx does not cover. No inline scripts anywhere (CSP). */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Every htmx request carries the session's CSRF token as a header too.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // Copy buttons: <button data-copy="ID"> copies the value (or text) of element ID.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) {
      return;
    }
    var text = source.value !== undefined ? source.value : source.textContent;
    var status = document.getElementById("copy-status");
    function done(message) {
      button.textContent = message;
      if (status) {
        status.textContent = message === "Copied" ? "The secret is on the clipboard." : message;
      }
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(
        function () { done("Copied"); },
        function () { source.select(); done("Press Ctrl+C to copy"); }
      );
    } else {
      source.select();
      done("Press Ctrl+C to copy");
    }
  });

  // "Go back" links on error pages: back to the form, with what was typed still there.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });

  // Plain forms whose submit button asks first: <button data-confirm="...">.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && button.hasAttribute("data-confirm") && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
