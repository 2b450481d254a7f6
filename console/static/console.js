// Sends this session's CSRF token with every fetch that changes something (console/access.py).
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return;
  const token = meta.content, header = meta.dataset.header;
  const original = window.fetch.bind(window);
  window.fetch = function (input, init) {
    init = init || {};
    const method = (init.method || "GET").toUpperCase();
    if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
      const headers = new Headers(init.headers || {});
      headers.set(header, token);
      init.headers = headers;
    }
    return original(input, init);
  };
  // editable grids (value maps, the ProductCode lookup): add a blank row, remove a row
  document.addEventListener("click", function (event) {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.matches("[data-add-row]")) {
      const body = target.closest("form").querySelector("[data-grid] tbody");
      const last = body.lastElementChild;
      const row = last.cloneNode(true);
      row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      body.appendChild(row);
      row.querySelector("input").focus();
    } else if (target.matches("[data-remove-row]")) {
      const row = target.closest("tr");
      if (row.parentElement.children.length > 1) row.remove();
      else row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    }
  });
  // a button with data-confirm asks first
  document.addEventListener("submit", function (event) {
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
})();
