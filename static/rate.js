// Rating page: keyboard shortcuts, time per item, and the hand-back redirect at the end.
// The page works without this file (plain form posts); this makes it fast from the keyboard.
(function () {
  "use strict";
  let shownAt = performance.now();

  function rater() { return document.getElementById("rater"); }

  function onSwap() {
    shownAt = performance.now();
    const link = document.querySelector("#rater [data-redirect]");
    if (link) setTimeout(function () { window.location.href = link.dataset.redirect; }, 3000);
  }

  // Seconds on this item go with the answer (the server falls back to the lease time).
  document.addEventListener("submit", function (event) {
    const field = event.target.querySelector("input[name=seconds]");
    if (field) field.value = ((performance.now() - shownAt) / 1000).toFixed(2);
  }, true);
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.parameters && "seconds" in event.detail.parameters) {
      event.detail.parameters.seconds = ((performance.now() - shownAt) / 1000).toFixed(2);
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "rater") onSwap();
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    const region = rater();
    if (!region) return;
    if (region.querySelector("form.answers button[disabled]")) return;  // a request is in flight
    const key = event.key === "Backspace" ? "u" : event.key.toLowerCase();
    const target = region.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (!target) return;
    event.preventDefault();
    target.click();
  });

  // Guidelines: open on the first item, folded once the first answer is in; a reader who
  // opens or folds them keeps that choice for this study (localStorage, per campaign).
  const guidelines = document.getElementById("guidelines");
  let storageOk = true;
  function remembered() {
    try { return guidelines ? window.localStorage.getItem(guidelines.dataset.remember) : null; }
    catch (e) { storageOk = false; return null; }
  }
  if (guidelines) {
    const choice = remembered();
    if (choice === "open") guidelines.open = true;
    if (choice === "closed") guidelines.open = false;
    guidelines.querySelector("summary").addEventListener("click", function () {
      // the toggle happens after the click: store the state it is about to take
      const next = guidelines.open ? "closed" : "open";
      if (storageOk) {
        try { window.localStorage.setItem(guidelines.dataset.remember, next); } catch (e) { /* private mode */ }
      }
    });
    document.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "rater" && remembered() === null) {
        guidelines.open = false;  // after the first answer, out of the way
      }
    });
  }

  // The completion page's copy button (clipboard API where allowed, else select the text).
  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const shown = function () {
      const note = document.getElementById("copy-done");
      if (note) note.hidden = false;
    };
    const select = function () {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { if (document.execCommand("copy")) shown(); } catch (e) { /* selected: Ctrl-C */ }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(shown, select);
    } else {
      select();
    }
  });

  onSwap();
})();
