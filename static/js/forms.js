// Small page behaviours kept out of inline handlers (the Content-Security-Policy allows no inline script):
// a <select data-autosubmit> submits its form when it changes.
document.addEventListener("change", (event) => {
  const el = event.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
});
