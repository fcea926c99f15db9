// WebAuthn ceremony for the login-step form: reads the options the server put in
// <script type="application/json" id="webauthn-options" data-mode="create|get">,
// calls navigator.credentials.create/get, writes the credential as JSON into the
// hidden field named "response" and submits the form. Loaded as a file (CSP: no inline scripts).
// The button, or submitting the form (Enter in "Name this key"), starts the prompt; without
// JavaScript the page says a key needs it (CONTRACT: every other method works without).
(function () {
  "use strict";

  function b64urlToBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var padded = base64 + "===".slice((base64.length + 3) % 4);
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function bufferToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeOptions(options, mode) {
    var publicKey = Object.assign({}, options);
    publicKey.challenge = b64urlToBuffer(options.challenge);
    if (mode === "create") {
      publicKey.user = Object.assign({}, options.user, { id: b64urlToBuffer(options.user.id) });
    }
    var list = mode === "create" ? "excludeCredentials" : "allowCredentials";
    if (options[list]) {
      publicKey[list] = options[list].map(function (c) {
        return Object.assign({}, c, { id: b64urlToBuffer(c.id) });
      });
    }
    return publicKey;
  }

  function encodeCredential(cred) {
    if (typeof cred.toJSON === "function") { return cred.toJSON(); }
    var r = cred.response;
    var response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = bufferToB64url(r.attestationObject);
      if (typeof r.getTransports === "function") { response.transports = r.getTransports(); }
    } else {
      response.authenticatorData = bufferToB64url(r.authenticatorData);
      response.signature = bufferToB64url(r.signature);
      if (r.userHandle) { response.userHandle = bufferToB64url(r.userHandle); }
    }
    return {
      id: cred.id, rawId: bufferToB64url(cred.rawId), type: cred.type, response: response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
    };
  }

  function run(source, button) {
    var form = button.form || document.querySelector("form");
    var field = form.querySelector("input[name=response]");
    var status = document.getElementById("webauthn-status");
    var mode = source.getAttribute("data-mode");
    var call;
    try {  // (options the browser cannot take throw here: the user is told below, as for a refusal)
      var publicKey = decodeOptions(JSON.parse(source.textContent), mode);
      call = mode === "create" ? navigator.credentials.create({ publicKey: publicKey })
                               : navigator.credentials.get({ publicKey: publicKey });
    } catch (err) {
      call = Promise.reject(err);
    }
    button.disabled = true;
    call.then(function (cred) {
      field.value = JSON.stringify(encodeCredential(cred));
      form.submit();  // (no submit event: the listener below does not see it)
    }).catch(function (err) {
      button.disabled = false;
      // Disabled during the prompt, the button lost the focus (to <body>): give it back, so that
      // a keyboard user is where the next try starts, the status above it just announced.
      button.focus();
      // The person reads a sentence; the browser's error name is for whoever opens the console.
      if (console && console.warn) { console.warn("WebAuthn failed:", err.name, err.message); }
      if (status) {
        // InvalidStateError on create: the authenticator holds one of the user's keys already
        // (excludeCredentials), so trying again cannot work.
        var duplicate = mode === "create" && err.name === "InvalidStateError" && status.getAttribute("data-duplicate");
        // NotAllowedError: the prompt was cancelled, timed out, or found none of the user's keys.
        // Nothing was sent: "not accepted" would blame the key.
        var unanswered = err.name === "NotAllowedError" && status.getAttribute("data-cancelled");
        // SecurityError: the browser refuses the RP id for this page's address (an IP address, a
        // setting that does not fit): no try can work, and only the operator can mend it.
        var refused = err.name === "SecurityError" && status.getAttribute("data-misconfigured");
        status.textContent = duplicate || unanswered || refused || status.getAttribute("data-failed");
        status.classList.add("error");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var source = document.getElementById("webauthn-options");
    var button = document.getElementById("webauthn-start");
    if (!source || !button) { return; }
    if (!window.PublicKeyCredential) {
      var status = document.getElementById("webauthn-status");
      // Over plain HTTP (but at localhost) no browser offers WebAuthn: the site's address, not the browser.
      var why = window.isSecureContext === false ? "data-misconfigured" : "data-unsupported";
      if (status) { status.textContent = status.getAttribute(why); }
      button.disabled = true;
      return;
    }
    button.addEventListener("click", function (event) { event.preventDefault(); run(source, button); });
    // Enter in a field of the form ("Name this key") submits it, with no credential yet: start
    // the prompt instead (once: not again while one is open).
    var form = button.form || document.querySelector("form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!button.disabled) { run(source, button); }
    });
    // The page renders it hidden and disabled: until now a click did nothing. (Shown by script, so
    // that no inline style is needed to hide it without JavaScript: the CSP allows none.)
    button.hidden = false;
    button.disabled = false;
    // Sign-in starts at once on a fresh page, not on one that reports a refusal: a key refused
    // (a possible clone, say) is not asked again without the user pressing the button.
    if (source.getAttribute("data-mode") === "get" && !document.getElementById("step-error")) { run(source, button); }
  });
})();
