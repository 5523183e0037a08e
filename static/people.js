// People page: "Copy link" copies an invitation link to the clipboard. The Clipboard API needs
// a secure context (https or localhost); elsewhere the selected text is copied the old way.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy-link");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  let copied = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(field.value);
      copied = true;
    }
  } catch (_) { /* fall back below */ }
  if (!copied) copied = document.execCommand("copy");
  const text = button.textContent;
  button.textContent = copied ? "Copied" : "Press Ctrl+C";
  setTimeout(() => { button.textContent = text; }, 1500);
});
