// RTMAS UI behaviour, kept small and plain:
// - an element with data-refresh="MS" is replaced every MS milliseconds by
//   the same element of a fresh copy of the page, until the fresh copy no
//   longer asks to refresh (a run or backfill has finished);
// - a task log with data-live="true" is tailed through the API, appending
//   new lines as text;
// - a select with data-autosubmit submits its form when changed.
"use strict";

function refreshLoop(element) {
  const delay = Number(element.dataset.refresh) || 3000;
  setTimeout(async () => {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (response.ok) {
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById(element.id);
        if (fresh) {
          element.replaceWith(fresh);
          if (fresh.dataset.refresh) refreshLoop(fresh);
          return;
        }
      }
    } catch (err) {
      console.warn("refresh failed", err);
    }
    refreshLoop(element);
  }, delay);
}

function formatTime(iso) {
  return iso.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|[+-]\d\d:\d\d)$/, "");
}

function tailLog(pre) {
  let last = Number(pre.dataset.last) || 0;
  const status = document.getElementById("log-status");
  const poll = async () => {
    try {
      const response = await fetch(`${pre.dataset.logUrl}?after=${last}`, { credentials: "same-origin" });
      if (response.ok) {
        const page = await response.json();
        const nearBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
        for (const line of page.lines) {
          const row = document.createElement("span");
          row.className = `line stream-${line.stream}`;
          const ts = document.createElement("span");
          ts.className = "ts";
          ts.textContent = formatTime(line.ts);
          row.append(ts, ` ${line.line}\n`);
          pre.append(row);
        }
        last = page.last;
        if (nearBottom) pre.scrollTop = pre.scrollHeight;
        if (!page.running && page.lines.length === 0) {
          if (status) status.textContent = "finished";
          return;
        }
      }
    } catch (err) {
      console.warn("log tail failed", err);
    }
    setTimeout(poll, 1500);
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refreshLoop);
  document.querySelectorAll("pre.log[data-live]").forEach(tailLog);
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
});
