// Refreshes a job report's counts from its progress.json until it is done.
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
        for (const cell of report.querySelectorAll("[data-count]")) {
          const value = data[cell.dataset.count];
          if (value !== undefined) cell.textContent = value.toLocaleString();
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
