// Ferryman console: progressive enhancement only; every page works without it.
"use strict";
document.addEventListener("click", (event) => {
  // A button with data-copy copies the text of the element it names.
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim()).then(() => {
      button.textContent = "Copied";
    });
  }
});

document.addEventListener("submit", (event) => {
  // A form with data-confirm asks first (without the script it simply goes).
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// A section with data-fill is a placeholder for something the server is still
// counting: fetch it (same origin, our own escaped HTML) and put it in its place.
// Without the script, the placeholder's own link reloads the page.
for (const slot of document.querySelectorAll("[data-fill]")) {
  fetch(slot.dataset.fill, { credentials: "same-origin" })
    .then((answer) => (answer.ok ? answer.text() : Promise.reject(answer.status)))
    .then((html) => {
      const holder = document.createElement("div");
      holder.innerHTML = html;
      const filled = holder.querySelector("section");
      if (filled) slot.replaceWith(filled);
    })
    .catch(() => {
      slot.removeAttribute("aria-busy");
    });
}
