// The course desk: sortable and filterable tables, in a few lines of plain JavaScript.
// Pages work without it (the CSV link, the forms); htmx swaps call enhance() again.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    return cell ? cell.textContent.trim() : "";
  }

  function compare(a, b) {
    var na = parseFloat(a.replace(/^[#$]/, "")), nb = parseFloat(b.replace(/^[#$]/, ""));
    if (!isNaN(na) && !isNaN(nb) && /^[#$]?-?\d/.test(a) && /^[#$]?-?\d/.test(b)) return na - nb;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains("none"); });
    rows.sort(function (r1, r2) {
      var c = compare(cellValue(r1, index), cellValue(r2, index));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function makeSortable(table) {
    if (table.dataset.enhanced) return;
    table.dataset.enhanced = "1";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      button.title = "Sort by " + th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, index, th); });
    });
  }

  function makeFilter(input) {
    if (input.dataset.enhanced) return;
    input.dataset.enhanced = "1";
    var table = document.getElementById(input.dataset.filter);
    var count = document.querySelector('[data-count="' + input.dataset.filter + '"]');
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        if (row.classList.contains("none")) return;
        var text = row.textContent.toLowerCase();
        var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows";
    });
  }

  function makeSelectAll(table) {
    if (table.dataset.selectAll || !table.querySelector("tbody input[type=checkbox]")) return;
    table.dataset.selectAll = "1";
    var tools = table.closest(".table-block").querySelector(".tools");
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Select all shown";
    button.addEventListener("click", function () {
      var boxes = Array.prototype.filter.call(
        table.querySelectorAll("tbody input[type=checkbox]"),
        function (box) { return !box.closest("tr").hidden; }
      );
      var all = boxes.every(function (box) { return box.checked; });
      boxes.forEach(function (box) { box.checked = !all; });
      button.textContent = all ? "Select all shown" : "Clear selection";
    });
    tools.appendChild(button);
  }

  function enhance(root) {
    (root || document).querySelectorAll("table[data-sortable]").forEach(makeSelectAll);
    (root || document).querySelectorAll("table[data-sortable]").forEach(makeSortable);
    (root || document).querySelectorAll("input[data-filter]").forEach(makeFilter);
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (e) { enhance(e.target); });
})();
