// calsync host page: select time in the week grid (mouse, touch or keyboard), explain a
// free-looking slot, and refresh the live part of the page every few seconds.
// No build step, no library. Everything here also has a no-JavaScript path (the form).
(function () {
  "use strict";

  var ROWS = 96;
  var live = document.getElementById("live");
  if (!live) { return; }
  var popover = document.getElementById("popover");
  var statusLine = document.getElementById("grid-status");
  var form = document.getElementById("block-form");

  var drag = null;        // {slots, date, anchor, row, moved} while the pointer is down
  var pendingStart = null; // {date, row}: the first click of "click start, then end"
  var cursor = null;       // {day, row}: the keyboard cursor
  var keyAnchor = null;    // {day, row}: Enter pressed once
  var lastFocus = null;

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(row) { return row >= ROWS ? "24:00" : pad(Math.floor(row / 4)) + ":" + pad((row % 4) * 15); }
  function allSlots() { return Array.prototype.slice.call(live.querySelectorAll(".slots")); }
  function slotsOf(date) { return live.querySelector('.slots[data-date="' + date + '"]'); }
  function say(text) { if (statusLine) { statusLine.textContent = text; } }

  function rowAt(slots, clientY) {
    var rect = slots.getBoundingClientRect();
    var row = Math.floor((clientY - rect.top) / (rect.height / ROWS));
    return Math.max(0, Math.min(ROWS - 1, row));
  }

  function mark(slots, className, first, last) {
    var old = slots.querySelectorAll("." + className);
    for (var i = 0; i < old.length; i++) { old[i].remove(); }
    if (first === null) { return; }
    var lo = Math.min(first, last), hi = Math.max(first, last);
    var div = document.createElement("div");
    div.className = className + " r" + lo + " s" + (hi - lo + 1);
    div.setAttribute("aria-hidden", "true");
    slots.appendChild(div);
  }

  function clearMarks(className) {
    allSlots().forEach(function (s) { mark(s, className, null, null); });
  }

  function redraw() {
    clearMarks("selection");
    clearMarks("cursor");
    if (drag) { mark(slotsOf(drag.date) || drag.slots, "selection", drag.anchor, drag.row); }
    if (pendingStart && slotsOf(pendingStart.date)) { mark(slotsOf(pendingStart.date), "selection", pendingStart.row, pendingStart.row); }
    if (keyAnchor && cursor) {
      var s = allSlots()[keyAnchor.day];
      if (s) { mark(s, "selection", keyAnchor.row, keyAnchor.day === cursor.day ? cursor.row : keyAnchor.row); }
    }
    if (cursor && allSlots()[cursor.day]) { mark(allSlots()[cursor.day], "cursor", cursor.row, cursor.row); }
  }

  // Put a selected range into the form; the host checks it and presses "Block this time".
  function choose(date, first, last) {
    var lo = Math.min(first, last), hi = Math.max(first, last) + 1;
    if (!form) { return; }
    form.elements.date.value = date;
    form.elements.start.value = clock(lo);
    form.elements.end.value = clock(hi);
    var slots = slotsOf(date);
    var label = slots ? slots.getAttribute("data-label") : date;
    say("Selected " + label + " " + clock(lo) + " to " + clock(hi) + ". Press Block this time to save.");
    var save = document.getElementById("save-block");
    form.scrollIntoView({ block: "nearest" });
    if (save) { save.focus({ preventScroll: true }); }
  }

  // --- Pointer: drag to select, click to explain (or to end a "click start, then end").
  live.addEventListener("pointerdown", function (event) {
    var slots = event.target.closest && event.target.closest(".slots");
    if (!slots || event.button !== 0 || event.target.closest("a")) { return; }
    event.preventDefault();
    closePopover(false);
    var row = rowAt(slots, event.clientY);
    drag = { slots: slots, date: slots.getAttribute("data-date"), anchor: row, row: row, moved: false };
    try { slots.setPointerCapture(event.pointerId); } catch (e) { /* not capturable */ }
    redraw();
  });
  live.addEventListener("pointermove", function (event) {
    if (!drag) { return; }
    var row = rowAt(drag.slots, event.clientY);
    if (row !== drag.row) { drag.row = row; drag.moved = drag.moved || row !== drag.anchor; redraw(); }
  });
  live.addEventListener("pointerup", function (event) {
    if (!drag) { return; }
    var done = drag;
    drag = null;
    if (done.moved) {
      pendingStart = null;
      redraw();
      choose(done.date, done.anchor, done.row);
    } else if (pendingStart && pendingStart.date === done.date) {
      var start = pendingStart.row;
      pendingStart = null;
      redraw();
      choose(done.date, start, done.row);
    } else {
      pendingStart = null;
      redraw();
      explain(done.date, done.anchor, event.clientX, event.clientY);
    }
  });
  live.addEventListener("pointercancel", function () { drag = null; redraw(); });

  // --- Keyboard: the grid is one focusable element with a cursor.
  live.addEventListener("focusin", function (event) {
    if (event.target.id === "week" && !cursor) {
      var days = allSlots();
      var today = 0;
      days.forEach(function (s, i) { if (s.parentNode.classList.contains("today")) { today = i; } });
      cursor = { day: today, row: 36 };
      redraw();
      announceCursor();
    }
  });
  live.addEventListener("keydown", function (event) {
    if (event.target.id !== "week" || !cursor) { return; }
    var days = allSlots();
    var key = event.key;
    if (key === "ArrowDown") { cursor.row = Math.min(ROWS - 1, cursor.row + 1); }
    else if (key === "ArrowUp") { cursor.row = Math.max(0, cursor.row - 1); }
    else if (key === "ArrowRight") { cursor.day = Math.min(days.length - 1, cursor.day + 1); }
    else if (key === "ArrowLeft") { cursor.day = Math.max(0, cursor.day - 1); }
    else if (key === "PageDown") { cursor.row = Math.min(ROWS - 1, cursor.row + 4); }
    else if (key === "PageUp") { cursor.row = Math.max(0, cursor.row - 4); }
    else if (key === "Enter" || key === " ") {
      if (!keyAnchor) {
        keyAnchor = { day: cursor.day, row: cursor.row };
        say("Start marked at " + clock(cursor.row) + ". Move to the end and press Enter.");
      } else {
        var anchor = keyAnchor;
        keyAnchor = null;
        redraw();
        choose(days[anchor.day].getAttribute("data-date"), anchor.row, anchor.day === cursor.day ? cursor.row : anchor.row);
      }
      event.preventDefault();
      redraw();
      return;
    } else if (key === "Escape") { keyAnchor = null; say("Selection cancelled."); }
    else if (key === "i" || key === "I") {
      var rect = days[cursor.day].getBoundingClientRect();
      explain(days[cursor.day].getAttribute("data-date"), cursor.row, rect.left + rect.width / 2,
        rect.top + (cursor.row + 1) * rect.height / ROWS);
      event.preventDefault();
      return;
    } else { return; }
    event.preventDefault();
    redraw();
    announceCursor();
  });

  function announceCursor() {
    var slots = allSlots()[cursor.day];
    if (slots) { say(slots.getAttribute("data-label") + " " + clock(cursor.row) + (keyAnchor ? " (selecting)" : "")); }
  }

  // --- "Why is this free": the explain data of the quarter hour under the click.
  function explain(date, row, x, y) {
    lastFocus = document.activeElement;
    var url = "/me/explain?date=" + encodeURIComponent(date) + "&time=" + encodeURIComponent(clock(row));
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (answer) { showPopover(answer, date, row, x, y); })
      .catch(function () { say("Could not load the explanation; reload the page."); });
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function showPopover(answer, date, row, x, y) {
    popover.textContent = "";
    var close = el("button", "Close", "close");
    close.type = "button";
    close.addEventListener("click", function () { closePopover(true); });
    popover.appendChild(close);
    var title = el("h3", answer.slot);
    title.id = "popover-title";
    popover.appendChild(title);
    var items = answer.items || [];
    popover.appendChild(el("p", answer.busy ? "Busy: booking pages do not offer this time."
      : items.length ? "Free: nothing here blocks bookings. These events do not block:" : "Free: nothing is on your calendars here."));
    if (items.length) {
      var list = el("ul");
      items.forEach(function (item) {
        var li = el("li");
        li.appendChild(el("strong", item.title + " \u2014 " + item.short));
        li.appendChild(el("div", item.explanation, "small muted"));
        list.appendChild(li);
      });
      popover.appendChild(list);
    }
    (answer.calendars || []).forEach(function (c) { popover.appendChild(el("p", c.explanation, "small")); });
    var actions = el("div", null, "actions");
    var block = el("button", "Block 15 minutes here", "primary");
    block.type = "button";
    block.addEventListener("click", function () { closePopover(false); choose(date, row, row); });
    var start = el("button", "Start a block here");
    start.type = "button";
    start.addEventListener("click", function () {
      closePopover(false);
      pendingStart = { date: date, row: row };
      redraw();
      say("Start marked at " + clock(row) + ". Now click where the block ends.");
    });
    actions.appendChild(block);
    actions.appendChild(start);
    popover.appendChild(actions);
    popover.hidden = false;
    var width = popover.offsetWidth, height = popover.offsetHeight;
    popover.style.left = Math.max(8, Math.min(x + 8, window.innerWidth - width - 8)) + "px";
    popover.style.top = Math.max(8, Math.min(y + 8, window.innerHeight - height - 8)) + "px";
    close.focus();
  }

  function closePopover(restoreFocus) {
    if (!popover || popover.hidden) { return; }
    popover.hidden = true;
    if (restoreFocus && lastFocus && document.body.contains(lastFocus)) { lastFocus.focus(); }
  }
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && popover && !popover.hidden) { closePopover(true); }
  });

  // On a narrow screen the grid scrolls sideways: start with today in view.
  (function showToday() {
    var scroller = live.querySelector(".scroller");
    var today = live.querySelector(".day.today");
    if (scroller && today && scroller.scrollWidth > scroller.clientWidth) {
      scroller.scrollLeft = Math.max(0, today.offsetLeft - 44);
    }
  })();

  // --- Refresh the banners, freshness and grid every few seconds (not while selecting).
  var refreshMs = (parseInt(live.getAttribute("data-refresh"), 10) || 3) * 1000;
  var stopped = false;
  function refresh() {
    if (stopped || drag || (popover && !popover.hidden) || document.hidden) { return; }
    fetch(live.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) { stopped = true; say("Your session ended: open a new sign-in link."); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null || drag || (popover && !popover.hidden)) { return; }
        var scroller = live.querySelector(".scroller");
        var left = scroller ? scroller.scrollLeft : 0;
        var focused = document.activeElement && document.activeElement.id === "week";
        live.innerHTML = html;
        scroller = live.querySelector(".scroller");
        if (scroller) { scroller.scrollLeft = left; }
        if (focused) { document.getElementById("week").focus({ preventScroll: true }); }
        redraw();
      })
      .catch(function () { /* offline for a moment: the next round tries again */ });
  }
  window.setInterval(refresh, refreshMs);
})();
