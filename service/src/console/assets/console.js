// The console's one script: live refresh (every 5 s, paused on request or while the tab is
// hidden) and confirmation dialogs. Every page works without it.
"use strict";
(function () {
  var live = document.querySelector("[data-live]");
  var toggle = document.getElementById("live-toggle");
  var paused = false;
  if (live && toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    });
    setInterval(function () {
      if (paused || document.hidden) { return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text || paused) { return; }
          var next = new DOMParser().parseFromString(text, "text/html").querySelector("[data-live]");
          var now = document.querySelector("[data-live]");
          if (next && now) { now.replaceWith(document.importNode(next, true)); }
        })
        .catch(function () {});
    }, 5000);
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    var submitter = event.submitter;
    if (submitter && submitter.getAttribute("data-confirm")) {
      question = submitter.getAttribute("data-confirm");
    }
    if (!question || form.querySelector("input[name=confirm]")) { return; }
    event.preventDefault();
    if (window.confirm(question)) {
      var yes = document.createElement("input");
      yes.type = "hidden"; yes.name = "confirm"; yes.value = "1";
      form.appendChild(yes);
      if (submitter && submitter.name) {
        var which = document.createElement("input");
        which.type = "hidden"; which.name = submitter.name; which.value = submitter.value;
        form.appendChild(which);
      }
      form.submit();
    }
  });
})();
