// A signed-in person's own places in the queue, followed while a page of this site is open.
//
// The server keeps the place: the ticket stays in the queue while this script long-polls it
// through the API (as the signed-in person: the session cookie, no token in the browser),
// and for RENTABOT_QUEUE_PERSON_GRACE seconds after the page stops (a reload, another view).
// Each answer moves the place shown; a grant raises an in-page alert and, where the person
// allowed it, a browser notification. Everything shown is set as text, never as markup.

const POLL_SECONDS = 25;
const RETRY_MS = 2000;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function getJSON(url) {
  const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  let body = null;
  try { body = await answer.json(); } catch { body = null; }
  return { status: answer.status, body };
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function asked(ticket) {
  if (ticket.resource_ids) return ticket.resource_ids.map((id) => `#${id}`).join(", ");
  return `${ticket.count} with tags ${ticket.tags.join(" ")}`;
}

function panel() {
  let aside = document.getElementById("my-queue");
  if (aside) return aside;
  aside = element("aside", { id: "my-queue", "aria-label": "Your places in the queue" });
  aside.append(element("h2", {}, "Your places in the queue"), element("ul"));
  if ("Notification" in window && Notification.permission === "default") {
    const ask = element("button", { type: "button", id: "allow-notifications" }, "Notify me when it is my turn");
    ask.addEventListener("click", async () => {
      await Notification.requestPermission();
      ask.remove();
    });
    aside.append(ask);
  }
  document.querySelector("main")?.prepend(aside);
  return aside;
}

function cancelForm(ticketId) {
  const form = element("form", { method: "post", action: "/actions/cancel", class: "inline" });
  form.append(
    element("input", { type: "hidden", name: "ticket_id", value: String(ticketId) }),
    element("input", { type: "hidden", name: "back", value: location.pathname + location.search }),
    element("button", { type: "submit" }, "Leave the queue"),
  );
  return form;
}

function alertGranted(lease) {
  const names = lease.resources.map((r) => r.name).join(", ");
  const until = lease.expires_at ? ` until ${new Date(lease.expires_at * 1000).toLocaleTimeString()}` : "";
  const text = `Your turn: ${names} ${lease.resources.length > 1 ? "are" : "is"} yours${until} (lease ${lease.id}).`;
  const box = element("div", { class: "granted", role: "alert", "data-lease-id": String(lease.id) });
  box.append(element("strong", {}, text), document.createTextNode(" "));
  for (const resource of lease.resources) {
    box.append(element("a", { href: `/resources/${resource.id}` }, `Open ${resource.name}`), document.createTextNode(" "));
  }
  document.querySelector("main")?.prepend(box);
  document.title = `★ ${document.title.replace(/^★ /, "")}`;
  if ("Notification" in window && Notification.permission === "granted") {
    try { new Notification("rentabot: your turn", { body: text, tag: `lease-${lease.id}` }); } catch { /* not shown */ }
  }
  document.dispatchEvent(new CustomEvent("rentabot:changed"));
}

// The places shown, by ticket id: moved by each long-poll answer, and re-read from the
// queue whenever the event stream says something changed (someone ahead was served or left:
// that decides nothing for this ticket, so its long-poll does not answer).
const shown = new Map();
let rereading = null;

async function rereadPlaces() {
  rereading = null;
  if (!shown.size) return;
  let answer;
  try { answer = await getJSON("/api/v2/queue"); } catch { return; }
  if (answer.status !== 200 || !answer.body) return;
  for (const ticket of answer.body.tickets) shown.get(ticket.id)?.(ticket.position);
}

document.addEventListener("rentabot:event", () => {
  if (!rereading) rereading = setTimeout(rereadPlaces, 200);
});

async function follow(ticket) {
  const list = panel().querySelector("ul");
  const item = element("li", { "data-ticket-id": String(ticket.id) });
  const place = element("span", { class: "place" });
  const show = (position) => {
    if (position == null) return;
    place.textContent = `place ${position}`;
    item.dataset.position = String(position);
  };
  shown.set(ticket.id, show);
  item.append(document.createTextNode(`Waiting for ${asked(ticket)}: `), place, document.createTextNode(" "), cancelForm(ticket.id));
  show(ticket.position);
  list.append(item);
  for (;;) {
    let answer;
    try {
      answer = await getJSON(`/api/v2/tickets/${ticket.id}?wait=${POLL_SECONDS}`);
    } catch {
      await sleep(RETRY_MS);
      continue;
    }
    if (answer.status === 202 && answer.body) {
      show(answer.body.ticket.position);
    } else if (answer.status === 200 && answer.body) {
      shown.delete(ticket.id);
      item.remove();
      alertGranted(answer.body.lease);
      return;
    } else if (answer.status === 409 || answer.status === 404) {
      shown.delete(ticket.id);
      item.textContent = `No longer waiting for ${asked(ticket)}: ${answer.body?.error?.message ?? "it left the queue"}`;
      return;
    } else {
      await sleep(RETRY_MS);
    }
  }
}

// Asking where the person acts (the Join button is a user gesture) makes the browser show its
// prompt; the panel's button asks again later.
function askOnJoin() {
  for (const form of document.querySelectorAll("form.join")) {
    form.addEventListener("submit", () => {
      if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
    });
  }
}

export async function followMyPlaces() {
  const me = document.body.dataset.me;
  if (!me) return;
  askOnJoin();
  let answer;
  try { answer = await getJSON("/api/v2/queue"); } catch { return; }
  if (answer.status !== 200 || !answer.body) return;
  for (const ticket of answer.body.tickets) {
    if (ticket.principal === me) follow(ticket);
  }
}
