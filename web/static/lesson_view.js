// Live seating chart of one lesson: polls the JSON endpoint named by <body data-source> and
// redraws. Only textContent is used, so ids chosen by clients can never inject markup.
// Every status is shown as a word and a symbol besides its colour, for readers who cannot tell
// the colours apart.
"use strict";

(function () {
  const body = document.body;
  const source = body.dataset.source;
  const interval = Number(body.dataset.interval);
  const byId = (id) => document.getElementById(id);
  const SYMBOL = { present: "●", left: "◐", absent: "○", empty: "·", unverified: "?" };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function badge(status) {
    return el("span", "badge", `${SYMBOL[status]} ${status}`);
  }

  // What happened to a roster entry, in a few words.
  function detail(entry) {
    const parts = [];
    if (entry.status === "present") parts.push(`since ${clock(entry.last_seen_at)}`);
    if (entry.status === "left") parts.push(`left ${clock(entry.last_seen_at)}`);
    if (entry.reconnects > 0) {
      parts.push(`${entry.reconnects} reconnect${entry.reconnects === 1 ? "" : "s"}`);
    }
    return parts.join(" · ");
  }

  // One person: name, status and what happened, marked for styles and tests.
  function person(entry, tag) {
    const node = el(tag, `person status-${entry.status}`);
    node.dataset.user = entry.user_id;
    node.dataset.status = entry.status;
    node.dataset.reconnects = String(entry.reconnects);
    node.append(el("span", "who", entry.user_id), badge(entry.status));
    const more = detail(entry);
    if (more) node.append(el("span", "detail", more));
    return node;
  }

  // Cells 1 … chart_seats (seat_count, held to what a seat map may hold), each with the
  // students enrolled in that seat (usually one).
  function chart(lesson) {
    const cells = [];
    for (let seat = 1; seat <= (lesson.chart_seats || 0); seat += 1) {
      const students = lesson.roster.filter((e) => e.enrolled && e.seat === seat);
      const status = students.length ? students[0].status : "empty";
      const cell = el("li", `seat status-${status}`);
      cell.dataset.seat = String(seat);
      cell.dataset.status = status;
      cell.append(el("span", "seat-number", `Seat ${seat}`));
      if (students.length === 0) {
        cell.append(el("span", "who none", "no one enrolled"), badge("empty"));
      }
      for (const student of students) cell.append(person(student, "div"));
      cells.push(cell);
    }
    return cells;
  }

  function seated(lesson, entry) {
    return entry.seat !== null && entry.seat >= 1 && entry.seat <= (lesson.chart_seats || 0);
  }

  function list(id, entries, empty, describe) {
    const items = entries.map((entry) => {
      const item = person(entry, "li");
      const note = describe(entry);
      if (note) item.append(el("span", "detail", note));
      return item;
    });
    if (items.length === 0) items.push(el("li", "none", empty));
    byId(id).replaceChildren(...items);
  }

  function renderRoster(lesson) {
    const note = byId("chart-note");
    note.hidden = lesson.roster !== null && lesson.seat_count !== null
      && lesson.seat_count === lesson.chart_seats;
    if (lesson.roster === null) {
      note.textContent = "The roster is off on this server (--roster-ttl 0).";
      for (const id of ["chart", "unseated", "outsiders", "unverified"]) {
        byId(id).replaceChildren();
      }
      return;
    }
    if (lesson.seat_count === null) note.textContent = "No such lesson in the database.";
    else if (lesson.seat_count !== lesson.chart_seats) {
      note.textContent = `The lesson row says ${lesson.seat_count} seats; the chart draws `
        + `${lesson.chart_seats}, as many as a seat map holds.`;
    }
    const counts = lesson.counts;
    for (const name of ["present", "left", "absent", "enrolled"]) {
      byId(`count-${name}`).textContent = String(counts[name]);
    }
    const outsiders = lesson.roster.filter((e) => !e.enrolled);
    byId("count-outsiders").textContent = String(outsiders.length);
    byId("seat-count").textContent = lesson.seat_count === null ? "" : `(${lesson.seat_count})`;
    byId("chart").replaceChildren(...chart(lesson));
    list("unseated", lesson.roster.filter((e) => e.enrolled && !seated(lesson, e)),
      "everyone enrolled has a seat", (e) => (e.seat === null ? "" : `seat ${e.seat} is not in the chart`));
    list("outsiders", outsiders, "nobody", (e) => `client ${e.client_id}`);
    byId("count-unverified").textContent = String(lesson.unverified.length);
    list("unverified", lesson.unverified, "none", (e) =>
      `claimed by client ${e.client_id} at ${clock(e.first_joined_at)}`);
  }

  function renderConnections(lesson) {
    const teacher = byId("teacher");
    const connected = lesson.teachers.length > 0;
    teacher.dataset.connected = String(connected);
    teacher.replaceChildren(
      "Teacher: ",
      el("span", `badge ${connected ? "status-present" : "status-absent"}`,
        connected ? "● connected" : "○ not connected"),
      connected ? ` ${lesson.teachers.map((t) => t.user_id).join(", ")}` : "",
    );
    const raw = lesson.teachers.map((t) => el("li", "", `${t.user_id} (sid ${t.sid})`));
    byId("teachers").replaceChildren(...(raw.length ? raw : [el("li", "", "not joined")]));
    byId("participants").replaceChildren(...lesson.participants.map((p) => {
      const tr = el("tr");
      for (const text of [p.client_id, p.role === null ? "(expired)" : p.role, p.sid]) {
        tr.append(el("td", "", text));
      }
      return tr;
    }));
    byId("seats").replaceChildren(...Object.entries(lesson.seats).map(([seat, value]) => {
      const tr = el("tr");
      tr.append(el("td", "", seat), el("td", "", value === "" ? "—" : value));
      return tr;
    }));
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
        const lesson = await response.json();
        renderConnections(lesson);
        renderRoster(lesson);
        byId("status").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      }
    } catch (error) {
      byId("status").textContent = `server unreachable (${error.message}); retrying`;
    }
    setTimeout(refresh, interval);
  }

  refresh();
})();
