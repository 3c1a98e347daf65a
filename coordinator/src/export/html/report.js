// scanfleet report: sort and filter the findings table. No network, no libraries.
(function () {
  "use strict";
  var table = document.getElementById("findings");
  var body = table.tBodies[0];
  var text = document.getElementById("filter-text");
  var sev = document.getElementById("filter-severity");
  var sup = document.getElementById("filter-suppressed");
  var count = document.getElementById("shown");
  var numeric = { score: true, severity: true, port: true, ipkey: false };
  var state = { key: "score", dir: "desc" };

  function value(row, key) {
    var v = row.getAttribute("data-" + key) || "";
    return numeric[key] ? parseFloat(v) || 0 : v;
  }

  function sortBy(key, dir) {
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "asc" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      if (x < y) return -sign;
      if (x > y) return sign;
      return (a.getAttribute("data-id") < b.getAttribute("data-id")) ? -1 : 1;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    state = { key: key, dir: dir };
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var k = th.getAttribute("data-key");
      th.setAttribute("aria-sort", k === key ? (dir === "asc" ? "ascending" : "descending") : "none");
    });
  }

  function filter() {
    var q = text.value.toLowerCase();
    var min = parseInt(sev.value, 10) || 0;
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = (r.getAttribute("data-text") || "").indexOf(q) !== -1 &&
        parseInt(r.getAttribute("data-severity"), 10) >= min &&
        (sup.checked || r.getAttribute("data-suppressed") !== "true");
      r.hidden = !ok;
      if (ok) shown++;
    });
    count.textContent = String(shown);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var key = th.getAttribute("data-key");
    if (!key) return;
    th.tabIndex = 0;
    function go() {
      sortBy(key, state.key === key && state.dir === "desc" ? "asc" : "desc");
    }
    th.addEventListener("click", go);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") go(); });
  });
  [text, sev, sup].forEach(function (el) {
    el.addEventListener("input", filter);
    el.addEventListener("change", filter);
  });

  // State from the address (`#sort=score-asc&filter=redis&min=3&suppressed=0`):
  // a link to a sorted, filtered view, and the browser test's hook.
  function fromHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) params[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    if (params.sort) {
      var m = /^([a-z]+)-(asc|desc)$/.exec(params.sort);
      if (m && table.querySelector('th[data-key="' + m[1] + '"]')) sortBy(m[1], m[2]);
    }
    if (params.filter !== undefined) text.value = params.filter;
    if (params.min !== undefined) sev.value = params.min;
    if (params.suppressed !== undefined) sup.checked = params.suppressed !== "0";
    if (params.click) {
      var th = table.querySelector('th[data-key="' + params.click + '"]');
      if (th) th.click();
    }
  }
  window.addEventListener("hashchange", function () { fromHash(); filter(); });
  sortBy("score", "desc");
  fromHash();
  filter();
  document.documentElement.setAttribute("data-report", "ready");
  window.scanfleetReport = { sortBy: sortBy, filter: filter, state: function () { return state; } };
})();
