// Keyboard shortcuts on a patient page (no inline script: the CSP forbids it).
//   j / k: next / previous alert      a: accept     o: override (focus the reason)
//   s: snooze      r: refer      n: note      ?: show the shortcuts
(function () {
  const alerts = Array.from(document.querySelectorAll(".alert[data-key]"));
  let at = 0;
  function focusAlert(i) {
    if (!alerts.length) return;
    at = Math.max(0, Math.min(alerts.length - 1, i));
    alerts[at].scrollIntoView({ block: "center" });
    alerts.forEach((a, j) => a.classList.toggle("current", j === at));
  }
  function choose(state, focus) {
    const form = alerts[at] && alerts[at].querySelector("form.decide");
    if (!form) return;
    form.querySelector("select[name=state]").value = state;
    const target = form.querySelector(focus);
    if (target) target.focus();
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const keys = { j: () => focusAlert(at + 1), k: () => focusAlert(at - 1),
      a: () => choose("accepted", "button[type=submit]"), o: () => choose("overridden", "select[name=reason]"),
      s: () => choose("snoozed", "input[name=follow_up]"), r: () => choose("referred", "input[name=referred_to]"),
      n: () => choose(alerts[at] ? alerts[at].querySelector("select[name=state]").value : "open", "textarea[name=note]"),
      "?": () => { const h = document.getElementById("shortcuts"); if (h) h.hidden = !h.hidden; } };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  const filter = document.querySelector("form.filters");
  if (filter) filter.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => filter.submit()));
})();
