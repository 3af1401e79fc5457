// agentd dashboard: the runs list refreshes itself; a run's page follows its events live from the daemon's
// SSE stream and reloads when the run ends or parks.
// fetch() rather than EventSource: every event type shows (EventSource needs each name listed in advance).
"use strict";
(function () {
  const list = document.getElementById("events");
  if (!list || list.dataset.live !== "yes" || !window.fetch || !window.TextDecoder) return;
  const note = document.getElementById("live-note");
  const ends = ["run_finished", "run_parked"];
  let after = Number(list.dataset.after) || 0;

  function show(data) {
    const type = String(data.type || "event");
    after = Math.max(after, Number(data.seq) || 0);
    delete data.type; delete data.seq; delete data.run_id;
    const item = document.createElement("li");
    item.className = "ev ev-" + type;
    const name = document.createElement("span");
    name.className = "ev-type";
    name.textContent = type.replace(/_/g, " ");
    const body = document.createElement("span");
    body.className = "ev-data";
    const text = JSON.stringify(data);
    body.textContent = text.length > 600 ? text.slice(0, 597) + "..." : text;
    item.append(name, " ", body);
    list.append(item);
    return ends.includes(type);
  }

  function refresh(message, delay) {
    note.textContent = message;
    setTimeout(function () { window.location.reload(); }, delay);
  }

  async function follow() {
    note.hidden = false;
    const url = "/runs/" + encodeURIComponent(list.dataset.run) + "/events?after=" + after;
    const response = await fetch(url, { headers: { Accept: "text/event-stream" }, cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter(function (l) { return l.startsWith("data:"); })
          .map(function (l) { return l.slice(5).trimStart(); }).join("\n");
        if (data && show(JSON.parse(data))) {
          refresh("The run " + (list.lastElementChild.className.includes("parked") ? "parked" : "ended")
            + "; refreshing…", 300);
          return;
        }
      }
    }
    refresh("The stream closed; refreshing…", 1000);
  }

  follow().catch(function (err) { refresh("Lost the stream (" + err.message + "); retrying…", 3000); });
})();

(function () {
  // The first page of the runs list: fetch it again every few seconds while the tab is visible.
  const box = document.getElementById("runs-list");
  if (!box || box.dataset.live !== "yes" || !window.fetch) return;
  setInterval(async function () {
    if (document.hidden) return;
    try {
      const response = await fetch(window.location.href, { cache: "no-store" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("runs-list");
      if (fresh && fresh.innerHTML !== box.innerHTML) box.innerHTML = fresh.innerHTML;
    } catch (err) { /* the daemon restarting: try again next time */ }
  }, 4000);
})();
