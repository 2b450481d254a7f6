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
  // a value-map grid is checked as it is typed in: the server tries it on a scratch copy of the
  // draft with the processors' loader and answers the problems, shown above the grid
  let pending = null;
  document.addEventListener("input", function (event) {
    const form = event.target instanceof HTMLElement ? event.target.closest("form[data-check]") : null;
    if (!form) return;
    clearTimeout(pending);
    pending = setTimeout(function () {
      window.fetch(form.dataset.check, { method: "POST", body: new FormData(form) })
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (found) {
          if (!found) return;
          const box = form.parentElement.querySelector(".live-problems");
          box.replaceChildren();
          found.problems.forEach(function (text) {
            const line = document.createElement("div");
            line.className = "problem";
            line.textContent = "⚠ " + text;
            box.appendChild(line);
          });
          if (!found.problems.length) {
            const ok = document.createElement("div");
            ok.className = "ok-text";
            ok.textContent = "✓ no problems with this map as typed (not applied yet)";
            box.appendChild(ok);
          }
        });
    }, 400);
  });
  // a button with data-confirm asks first
  document.addEventListener("submit", function (event) {
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
})();
