// Refreshes a job report's counts and charts from its progress.json until it
// is done. The charts arrive as SVG drawn by the server (mailer/jobs/report.py).
"use strict";
(function () {
  const report = document.querySelector("[data-progress-url]");
  if (!report) return;
  const url = report.dataset.progressUrl;
  let rounds = 0;
  function refresh() {
    rounds += 1;
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => response.json())
      .then((data) => {
        // "shown": each count as the server writes it ("5,000"), not in the
        // browser's own locale, so the page never mixes two ways.
        const shown = data.shown || {};
        for (const cell of report.querySelectorAll("td[data-count]")) {
          const value = shown[cell.dataset.count];
          if (value !== undefined) cell.textContent = value;
        }
        for (const box of report.querySelectorAll("[data-chart]")) {
          const svg = (data.charts || {})[box.dataset.chart];
          if (svg === undefined || box.dataset.drawn === svg) continue;
          box.dataset.drawn = svg;
          if (svg) {
            box.innerHTML = svg;  // markup escaped by Django's format_html
          } else {
            const empty = document.createElement("p");
            empty.className = "help";
            empty.textContent = box.dataset.empty;
            box.replaceChildren(empty);
          }
        }
        const status = report.querySelector("[data-status]");
        if (status) status.textContent = data.status_display;
        report.dataset.refreshed = String(rounds);
        if (!data.finished && rounds < 720) setTimeout(refresh, 5000);
      })
      .catch(() => { if (rounds < 720) setTimeout(refresh, 15000); });
  }
  refresh();
})();
