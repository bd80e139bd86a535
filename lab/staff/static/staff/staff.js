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
  document.addEventListener("htmx:afterSwap", function (event) {
    openDetails.forEach(function (id) {
      var element = document.getElementById(id);
      if (element) {
        element.open = true;
      }
    });
    var region = pollingRegion(event);
    if (region) {
      markFresh(region);
    }
  });

  // A polled region (hx-trigger "every …") whose poll fails keeps its last state, which htmx does not
  // replace with an error page: say so above it, or the floor reads failed jobs and printers that are no
  // longer true. A refusal (401/403: role removed, account seal refused) reloads the whole page, so the
  // page's own refusal or the login shows instead of a frozen board.
  var lastSwap = new Map();

  function pollingRegion(event) {
    var element = event.detail && event.detail.elt;
    if (!element || !element.getAttribute) {
      return null;
    }
    return /(^|[\s,])every\s/.test(element.getAttribute("hx-trigger") || "") ? element : null;
  }

  function twoDigits(number) {
    return (number < 10 ? "0" : "") + number;
  }

  function lastUpdated(region) {
    // The time the region itself shows ("Updated 12:34:56 UTC"), else when it was last swapped in.
    var shown = region.querySelector("time[datetime]");
    var when = shown ? new Date(shown.getAttribute("datetime")) : null;
    if (!when || isNaN(when.getTime())) {
      when = lastSwap.get(region) || new Date();
    }
    return (
      twoDigits(when.getUTCHours()) + ":" + twoDigits(when.getUTCMinutes()) + ":" + twoDigits(when.getUTCSeconds())
    );
  }

  function bannerOf(region) {
    var sibling = region.previousElementSibling;
    return sibling && sibling.classList.contains("stale-banner") ? sibling : null;
  }

  function markStale(region) {
    var banner = bannerOf(region);
    if (!banner) {
      banner = document.createElement("p");
      banner.className = "stale-banner";
      banner.setAttribute("role", "alert");
      region.parentNode.insertBefore(banner, region);
    }
    banner.textContent = "Not updated since " + lastUpdated(region) + " UTC: the server did not answer";
    region.classList.add("stale");
  }

  function markFresh(region) {
    lastSwap.set(region, new Date());
    var banner = bannerOf(region);
    if (banner) {
      banner.remove();
    }
    region.classList.remove("stale");
  }

  document.addEventListener("htmx:responseError", function (event) {
    var region = pollingRegion(event);
    if (!region) {
      return;
    }
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401 || status === 403) {
      window.location.reload();
      return;
    }
    markStale(region);
  });
  ["htmx:sendError", "htmx:timeout"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var region = pollingRegion(event);
      if (region) {
        markStale(region);
      }
    });
  });
})();
