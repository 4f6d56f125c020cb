// rentabot's page, progressively enhanced: "/" focuses the search, expiry counts down, and
// the event stream updates the resource rows in place and the activity table (the page
// stays readable without it). No library, no request outside this server; inserted
// content comes from this server's own escaped HTML, never from event text. A signed-in
// person's places in the queue are followed by waiting.js.

import { followMyPlaces } from "./waiting.js";

const KINDS = ["granted", "released", "expired", "force_released", "renewed",
  "maintenance_on", "maintenance_off", "inventory", "ticket_queued", "ticket_cancelled", "ticket_timed_out",
  "ticket_abandoned"];
// The activity view shows every event, also those that change no resource row.
const ACTIVITY_KINDS = [...KINDS, "resource_added", "resource_updated", "resource_retired"];

function focusSearchOnSlash() {
  document.addEventListener("keydown", (event) => {
    const search = document.getElementById("search");
    const typing = event.target instanceof HTMLElement &&
      (event.target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName));
    if (event.key === "/" && search && !typing) {
      event.preventDefault();
      search.focus();
    }
  });
}

function countDown() {
  const now = Date.now() / 1000;
  for (const span of document.querySelectorAll(".countdown[data-expires]")) {
    const expires = parseFloat(span.dataset.expires);
    if (!expires) { span.textContent = "never"; continue; }
    const left = expires - now;
    span.textContent = left <= 0 ? "now"
      : left < 120 ? `in ${Math.round(left)} s`
      : left < 7200 ? `in ${Math.round(left / 60)} min`
      : `in ${(left / 3600).toFixed(1)} h`;
  }
}

let pending = null;

// This very view (same filters, same page) as the server renders it now, or null.
async function fetchView() {
  const answer = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  if (!answer.ok) return null;
  return new DOMParser().parseFromString(await answer.text(), "text/html");
}

// Fetch this very view and swap the rows that changed: the server stays the one place that
// decides what a row shows.
async function refreshRows() {
  pending = null;
  const fresh = await fetchView();
  if (!fresh) return;
  const table = document.querySelector("#resources tbody");
  const freshTable = fresh.querySelector("#resources tbody");
  if (table && freshTable) {
    const rows = new Map([...table.rows].map((row) => [row.id, row]));
    for (const row of [...freshTable.rows]) {
      const old = rows.get(row.id);
      if (old && old.innerHTML !== row.innerHTML) {
        old.replaceWith(document.importNode(row, true));
      }
    }
  }
  for (const id of ["summary"]) {
    const mine = document.getElementById(id);
    const theirs = fresh.getElementById(id);
    if (mine && theirs) mine.textContent = theirs.textContent;
  }
  countDown();
}

// The activity view: the newest events as the server renders them replace the table's
// body whole (it is at most a hundred rows, newest first).
async function refreshActivity() {
  pending = null;
  const fresh = await fetchView();
  const body = document.querySelector("#activity tbody");
  const freshBody = fresh && fresh.querySelector("#activity tbody");
  if (body && freshBody) body.replaceWith(document.importNode(freshBody, true));
}

// Refresh this view's live part once, shortly: many events in a burst cost one fetch.
function refreshSoon() {
  const refresh = document.getElementById("activity") ? refreshActivity : refreshRows;
  if (!pending) pending = setTimeout(refresh, 100);
}

// One stream per page, for the live rows and for a signed-in person's places in the queue
// (waiting.js hears of every event as "rentabot:event").
function follow() {
  const rows = document.querySelector("[data-live]");
  if ((!rows && !document.body.dataset.me) || !window.EventSource) return;
  const status = document.getElementById("live");
  const activity = document.getElementById("activity");
  // The activity view follows from the last event it shows, so nothing committed between
  // its rendering and the stream's opening is missed.
  const since = activity ? `?since=${encodeURIComponent(activity.dataset.since || "0")}` : "";
  const stream = new EventSource(`/api/v2/events/stream${since}`);
  const changed = () => {
    document.dispatchEvent(new CustomEvent("rentabot:event"));
    if (rows) refreshSoon();
  };
  for (const kind of activity ? ACTIVITY_KINDS : KINDS) stream.addEventListener(kind, changed);
  stream.onmessage = changed;
  stream.onopen = () => { if (status) status.textContent = "live"; document.body.dataset.live = "open"; };
  stream.onerror = () => { if (status) status.textContent = "reconnecting…"; };
}

// A Copy button beside each pipeline line (only with JavaScript: without it the line is
// still there to select). The clipboard API needs a secure context (https, or this
// machine); elsewhere the line is selected and copied the older way.
function copyButtons() {
  for (const box of document.querySelectorAll(".snippet-box")) {
    const code = box.querySelector("code");
    if (!code || box.querySelector("button")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", `Copy ${box.dataset.what || "this line"}`);
    button.addEventListener("click", async () => {
      const text = code.textContent;
      let copied = false;
      if (navigator.clipboard && window.isSecureContext) {
        try { await navigator.clipboard.writeText(text); copied = true; } catch { copied = false; }
      }
      if (!copied) {
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copied = document.execCommand("copy");
      }
      button.textContent = copied ? "Copied" : "Press Ctrl+C";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    box.append(button);
  }
}

focusSearchOnSlash();
copyButtons();
countDown();
setInterval(countDown, 1000);
follow();
document.addEventListener("rentabot:changed", () => { if (document.querySelector("[data-live]")) refreshSoon(); });
followMyPlaces();
