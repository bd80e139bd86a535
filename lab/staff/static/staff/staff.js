/* Staff pages: small behaviours kept out of the HTML so the Content-Security-Policy allows no inline script.
   Focus goes where a packer's scanner or keyboard types next: the first item still to count, then the
   tracking number, then the scan box. */
(function () {
  "use strict";

  function focusNextInput() {
    var order = ["input.count-input", "input#tracking", "input.scan-input"];
    for (var i = 0; i < order.length; i += 1) {
      var element = document.querySelector(order[i]);
      if (element && !element.disabled) {
        element.focus();
        return;
      }
    }
  }

  document.addEventListener("DOMContentLoaded", focusNextInput);

  // The board is re-rendered every few seconds: a finished-batches list a person opened stays open.
  var openDetails = [];
  document.addEventListener("htmx:beforeSwap", function () {
    openDetails = Array.prototype.map.call(document.querySelectorAll("details[open][id]"), function (element) {
      return element.id;
    });
  });
  document.addEventListener("htmx:afterSwap", function () {
    openDetails.forEach(function (id) {
      var element = document.getElementById(id);
      if (element) {
        element.open = true;
      }
    });
  });
})();
