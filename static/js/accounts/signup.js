// Sign-up page: live username duplicate check (must pass before submit), e-mail domain picker, phone format.
// The server validates everything again; this only gives earlier feedback.
(function () {
  "use strict";
  var form = document.getElementById("signup-form");
  if (!form) return;

  var username = form.querySelector("[name=username]");
  var checkButton = document.getElementById("username-check");
  var status = document.getElementById("username-status");
  var url = form.getAttribute("data-availability-url");
  var state = { username: null, available: false, pending: null };
  var timer = null;

  function show(text, ok) {
    status.textContent = text || "";
    status.classList.toggle("ok", ok === true);
    status.classList.toggle("error", ok === false);
  }

  function check() {
    var value = username.value.trim();
    if (state.pending && state.pending.value === value) return state.pending.promise;
    show(form.getAttribute("data-msg-checking"));
    var promise = fetch(url + "?username=" + encodeURIComponent(value), {
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          var message = body && body.error && body.error.message;
          throw new Error(message || form.getAttribute("data-msg-check-failed"));
        }
        return body;
      });
    }).then(function (body) {
      if (username.value.trim() !== value) return false; // the user typed on meanwhile
      state.username = value;
      state.available = !!body.available;
      show(body.message, state.available);
      username.setAttribute("aria-invalid", state.available ? "false" : "true");
      return state.available;
    }).catch(function (error) {
      state.username = null;
      state.available = false;
      show(error && error.message ? error.message : form.getAttribute("data-msg-check-failed"), false);
      return false;
    }).finally(function () {
      state.pending = null;
    });
    state.pending = { value: value, promise: promise };
    return promise;
  }

  username.addEventListener("input", function () {
    state.username = null;
    state.available = false;
    show("");
    clearTimeout(timer);
    if (username.value.trim().length >= 4) timer = setTimeout(check, 400);
  });
  checkButton.addEventListener("click", function () { check(); });

  form.addEventListener("submit", function (event) {
    var value = username.value.trim();
    if (state.username === value && state.available) return;
    event.preventDefault();
    if (!value) {
      show(form.getAttribute("data-msg-check-first"), false);
      username.focus();
      return;
    }
    check().then(function (available) {
      if (available) {
        form.submit();
      } else {
        if (!status.textContent) show(form.getAttribute("data-msg-check-first"), false);
        username.focus();
      }
    });
  });

  // E-mail domain picker: the free-text domain is only needed for "enter directly".
  var domain = form.querySelector("[name=email_domain]");
  var customRow = document.getElementById("custom-domain-row");
  var customInput = form.querySelector("[name=email_domain_custom]");
  function syncDomain(focus) {
    var custom = domain.value === customRow.getAttribute("data-custom-value");
    customRow.hidden = !custom;
    if (custom && focus) customInput.focus();
  }
  domain.addEventListener("change", function () { syncDomain(true); });
  syncDomain(false);

  // Phone: keep digits and show them as 010-1234-5678 while typing.
  var phone = form.querySelector("[name=phone]");
  phone.addEventListener("input", function () {
    var digits = phone.value.replace(/\D/g, "").slice(0, 11);
    var formatted = digits;
    if (digits.length > 7) formatted = digits.slice(0, 3) + "-" + digits.slice(3, 7) + "-" + digits.slice(7);
    else if (digits.length > 3) formatted = digits.slice(0, 3) + "-" + digits.slice(3);
    phone.value = formatted;
  });

  // Confirm password: say so as soon as the two differ.
  var password1 = form.querySelector("[name=password1]");
  var password2 = form.querySelector("[name=password2]");
  var mismatch = document.createElement("p");
  mismatch.className = "field-status error";
  mismatch.setAttribute("aria-live", "polite");
  password2.parentNode.appendChild(mismatch);
  function syncMismatch() {
    var differ = password2.value && password1.value !== password2.value;
    mismatch.textContent = differ ? form.getAttribute("data-msg-mismatch") : "";
  }
  password1.addEventListener("input", syncMismatch);
  password2.addEventListener("input", syncMismatch);
})();
