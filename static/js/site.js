// Shared page behaviour: <dialog> modals and confirmation prompts. No dependencies.
(function () {
  "use strict";

  function openDialog(id, opener) {
    var dialog = document.getElementById(id);
    if (!dialog || typeof dialog.showModal !== "function") return;
    dialog._opener = opener || null;
    dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog-open]");
    if (opener) {
      event.preventDefault();
      openDialog(opener.getAttribute("data-dialog-open"), opener);
      return;
    }
    var closer = event.target.closest("[data-dialog-close]");
    if (closer) {
      var dialog = closer.closest("dialog");
      var target = closer.getAttribute("data-dialog-confirm");
      if (target) {
        // e.g. "Agree" in the terms popup ticks the consent checkbox it belongs to.
        var box = document.getElementById(target);
        if (box) {
          box.checked = true;
          box.dispatchEvent(new Event("change", { bubbles: true }));
        }
      }
      if (dialog) dialog.close();
      return;
    }
    // A click on the backdrop (outside the dialog's box) closes it.
    if (event.target.tagName === "DIALOG" && event.target.open) {
      var rect = event.target.getBoundingClientRect();
      var inside = event.clientX >= rect.left && event.clientX <= rect.right &&
        event.clientY >= rect.top && event.clientY <= rect.bottom;
      if (!inside) event.target.close();
    }
  });

  // Return focus to the button that opened the dialog.
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (dialog.tagName === "DIALOG" && dialog._opener) dialog._opener.focus();
  }, true);

  // <form data-confirm="Are you sure?"> asks before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  window.Observator = window.Observator || {};
  window.Observator.openDialog = openDialog;
})();
