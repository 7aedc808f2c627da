// The live step list of a running deployment's page (pages.live): follows the stream of
// /deployments/{id}/events. Text goes in with textContent, never as HTML: step names, hosts
// and reasons come from the records and may hold anything.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  const rows = document.getElementById("live-steps");
  const state = document.getElementById("live-state");
  const source = new EventSource(live.dataset.events);

  function cell(text, css) {
    const td = document.createElement("td");
    td.textContent = text;
    if (css) {
      td.className = css;
    }
    return td;
  }

  source.addEventListener("step", function (event) {
    const step = JSON.parse(event.data);
    const row = document.createElement("tr");
    row.dataset.step = String(step.id);
    row.dataset.status = step.status;
    row.append(
      cell(step.phase),
      cell(step.name),
      cell(step.host),
      cell(step.status, step.status),
      cell(step.took, "num"),
    );
    // A step is sent again when it ends: its row is replaced, in place.
    const old = rows.querySelector('tr[data-step="' + row.dataset.step + '"]');
    if (old) {
      old.replaceWith(row);
    } else {
      rows.append(row);
    }
  });

  source.addEventListener("finished", function (event) {
    const run = JSON.parse(event.data);
    source.close(); // the stream ends here; an open EventSource would reconnect
    live.dataset.status = run.status;
    state.className = "note " + run.status;
    state.textContent =
      "finished: " + run.status.replace("_", " ") + " at " + run.finished_at +
      (run.reason ? " (" + run.reason + "); reload for the whole report" : "; reload for the whole report");
  });

  source.addEventListener("error", function () {
    if (source.readyState !== EventSource.CLOSED) {
      state.textContent = "connection lost: reconnecting";
    }
  });
})();
