// Tend dashboard behaviour: live-stream status, re-sorting tiles by acuity
// after live updates, ages that keep counting, and a flash (and, if chosen,
// a tone) for new high-priority alarms. Server HTML does the rest.
(function () {
  "use strict";

  function ago(seconds) {
    if (seconds < 0) return "now";
    if (seconds < 60) return Math.floor(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 172800) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  // Ages of vitals tick on between updates; a value that passes its
  // staleness limit is marked stale without waiting for the server.
  function refreshAges() {
    var now = Date.now();
    document.querySelectorAll("time[data-stale-after]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      var age = (now - t) / 1000;
      el.textContent = ago(age);
      var vital = el.closest(".vital");
      if (vital && age > Number(el.getAttribute("data-stale-after"))) vital.classList.add("stale");
    });
  }

  function sortTiles() {
    document.querySelectorAll(".tiles[data-sort='acuity']").forEach(function (box) {
      var slots = Array.prototype.slice.call(box.children);
      var key = function (slot) {
        var t = slot.querySelector(".tile");
        return t ? [Number(t.getAttribute("data-acuity")) || 0, t.getAttribute("data-name") || ""] : [0, ""];
      };
      var sorted = slots.slice().sort(function (a, b) {
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) return kb[0] - ka[0];
        return ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0;
      });
      var same = sorted.every(function (s, i) { return s === slots[i]; });
      if (same) return;
      var focused = document.activeElement;
      sorted.forEach(function (s) { box.appendChild(s); });
      if (focused && box.contains(focused)) focused.focus();
    });
  }

  var seenHigh = {};
  var firstLook = true;
  function checkNewHigh() {
    var fresh = false;
    document.querySelectorAll("[data-new-high]").forEach(function (el) {
      var id = el.getAttribute("data-new-high");
      if (!seenHigh[id]) { seenHigh[id] = true; fresh = true; }
    });
    if (fresh) {
      document.body.classList.remove("flash");
      void document.body.offsetWidth; // restart the animation
      document.body.classList.add("flash");
      setTimeout(function () { document.body.classList.remove("flash"); }, 3000);
      if (!firstLook) beep();
    }
    firstLook = false;
  }

  function soundWanted() {
    try { return localStorage.getItem("tend.alarmSound") === "on"; } catch (e) { return false; }
  }

  function beep() {
    if (!soundWanted()) return;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    var ctx = new Ctx(), osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.4);
  }

  function setStatus(text, on) {
    document.querySelectorAll(".live-status").forEach(function (el) {
      el.textContent = text;
      el.classList.toggle("on", !!on);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshAges();
    checkNewHigh();
    setInterval(refreshAges, 5000);
    var sound = document.getElementById("alarm-sound");
    if (sound) {
      sound.checked = soundWanted();
      sound.addEventListener("change", function () {
        try { localStorage.setItem("tend.alarmSound", sound.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      });
    }
  });

  document.addEventListener("htmx:sseOpen", function (e) {
    setStatus("live", true);
    var source = e.detail && e.detail.source;
    if (source && !source.tendReload) {
      source.tendReload = true;
      // The server dropped this stream (it fell behind or is restarting):
      // what is shown may be incomplete, so load the page afresh.
      source.addEventListener("reload", function () { setTimeout(function () { location.reload(); }, 1000); });
      document.dispatchEvent(new CustomEvent("tend:source", { detail: source }));
    }
  });
  document.addEventListener("htmx:sseError", function () {
    setStatus("reconnecting…", false);
    // The stream ends when the session does (signed out elsewhere, idle,
    // revoked): then go to the sign-in page rather than show stale values.
    fetch("/account", { redirect: "manual", credentials: "same-origin" }).then(function (r) {
      if (r.type === "opaqueredirect" || r.status === 401) { location.reload(); }
    }).catch(function () { /* offline: keep reconnecting */ });
  });
  document.addEventListener("htmx:afterSettle", function () {
    sortTiles();
    refreshAges();
    checkNewHigh();
  });
})();
