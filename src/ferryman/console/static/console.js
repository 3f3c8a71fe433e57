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
