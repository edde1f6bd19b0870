// Live view of one lesson: polls the JSON endpoint named by <body data-source> and redraws.
// Only textContent is used, so ids and roles chosen by clients can never inject markup.
"use strict";

(function () {
  const body = document.body;
  const source = body.dataset.source;
  const interval = Number(body.dataset.interval);
  const byId = (id) => document.getElementById(id);

  function row(cells) {
    const tr = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }

  function render(lesson) {
    byId("teachers").replaceChildren(...lesson.teachers.map((t) => {
      const li = document.createElement("li");
      li.textContent = `${t.user_id} (sid ${t.sid})`;
      return li;
    }));
    if (lesson.teachers.length === 0) {
      const li = document.createElement("li");
      li.textContent = "not joined";
      byId("teachers").appendChild(li);
    }
    byId("participant-count").textContent = `(${lesson.participants.length})`;
    byId("participants").replaceChildren(...lesson.participants.map(
      (p) => row([p.client_id, p.role === null ? "(expired)" : p.role, p.sid])));
    byId("seats").replaceChildren(...Object.entries(lesson.seats).map(
      ([seat, value]) => row([seat, value === "" ? "—" : value])));
  }

  async function refresh() {
    try {
      const response = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        byId("status").textContent = "not authorized: open this page with ?token=<admin token>";
        return;
      }
      if (!response.ok) {
        byId("status").textContent = `server answered ${response.status}; retrying`;
      } else {
        render(await response.json());
        byId("status").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      }
    } catch (error) {
      byId("status").textContent = `server unreachable (${error.message}); retrying`;
    }
    setTimeout(refresh, interval);
  }

  refresh();
})();
