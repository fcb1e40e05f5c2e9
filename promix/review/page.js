// promix review page: keyboard decisions on flagged labels, kept in localStorage, exported
// as corrections.csv (path,index,given_label,decision,label). No external resource.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("review-data").textContent);
  var KEY = "promix-review:" + D.key;
  var C = D.classes, items = D.items;
  var DECISIONS = ["accept", "keep", "relabel", "invalid", "unsure"];
  var fromAddress = parseAddress(location.hash);
  var decisions = fromAddress || stored();  // sample index -> {decision, label (class id or -1)}
  var view = [];  // positions in items that pass the filters
  var cur = 0;  // position in view
  var filters = {cls: "", pair: "", show: "all"};

  // Decisions are kept twice: in localStorage, which outlives the tab, and in the page's own
  // address (#review=key&d=index:decision:label,...), which a reload keeps. The second copy is
  // there because Chromium sometimes opens a file:// page with an empty localStorage after a
  // reload (seen in Chromium 156); the address is this tab's latest state, so it wins.
  function stored() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(decisions)); } catch (e) { /* private mode */ }
    try { history.replaceState(null, "", "#" + addressOf(decisions)); } catch (e) { /* none */ }
  }
  function addressOf(ds) {
    var parts = Object.keys(ds).map(function (i) {
      return i + ":" + ds[i].decision + ":" + ds[i].label;
    });
    return "review=" + encodeURIComponent(D.key) + "&d=" + parts.join(",");
  }
  function parseAddress(hash) {  // null unless the address holds this page's own decisions
    var m = /^#review=([^&]*)&d=(.*)$/.exec(hash || "");
    if (!m || decodeURIComponent(m[1]) !== D.key) { return null; }
    var known = {}, out = {};
    items.forEach(function (it) { known[it.i] = true; });
    m[2].split(",").forEach(function (part) {
      var f = part.split(":"), label = +f[2];
      if (f.length === 3 && known[f[0]] && DECISIONS.indexOf(f[1]) >= 0 &&
          label === Math.floor(label) && label >= -1 && label < C.length) {
        out[f[0]] = {decision: f[1], label: label};
      }
    });
    return out;
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function current() { return items[view[cur]]; }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }

  // ------------------------------------------------------------------ decisions
  function decide(decision, label) {
    var it = current();
    if (!it) { return; }
    decisions[it.i] = {decision: decision, label: label};
    save();
    advance();
  }
  function pick(c) {
    var it = current();
    if (!it || c < 0 || c >= C.length) { return; }
    if (c === it.given) { decide("keep", c); } else if (c === it.sug) { decide("accept", c); }
    else { decide("relabel", c); }
  }
  function clear() {
    var it = current();
    if (it) { delete decisions[it.i]; save(); render(); }
  }
  function advance() {  // the next undecided item from the current one on, else the next one
    var was = current() ? current().i : null;
    applyFilters(true);
    for (var k = 0; k < view.length; k++) {
      var j = (cur + k) % view.length;
      if (!decisions[items[view[j]].i]) { cur = j; render(); return; }
    }
    move(current() && current().i === was ? 1 : 0);
  }
  function move(step) {
    if (view.length) { cur = Math.min(Math.max(cur + step, 0), view.length - 1); }
    render();
  }

  // ------------------------------------------------------------------ filters
  function passes(it) {
    if (filters.cls !== "" && it.given !== +filters.cls && it.sug !== +filters.cls) { return false; }
    if (filters.pair !== "" && it.given + ">" + it.sug !== filters.pair) { return false; }
    if (filters.show === "open" && decisions[it.i]) { return false; }
    if (filters.show === "done" && !decisions[it.i]) { return false; }
    return true;
  }
  function applyFilters(keepCurrent) {
    var at = keepCurrent && current() ? current().i : null, was = cur;
    view = [];
    items.forEach(function (it, p) { if (passes(it)) { view.push(p); } });
    cur = 0;
    if (at !== null) {  // stay on the same image when it still passes, else on its position
      var found = view.findIndex(function (p) { return items[p].i === at; });
      cur = found >= 0 ? found : Math.max(0, Math.min(was, view.length - 1));
    }
  }
  function buildFilters() {
    var nav = document.getElementById("filters"), pairs = {};
    items.forEach(function (it) {
      var k = it.given + ">" + it.sug;
      pairs[k] = (pairs[k] || 0) + 1;
    });
    var cls = el("select", {id: "f-class", title: "given or suggested class"});
    cls.appendChild(el("option", {value: ""}, "every class"));
    C.forEach(function (name, c) { cls.appendChild(el("option", {value: String(c)}, name)); });
    var pair = el("select", {id: "f-pair", title: "given -> suggested"});
    pair.appendChild(el("option", {value: ""}, "every given \u2192 suggested pair"));
    Object.keys(pairs).sort(function (a, b) { return pairs[b] - pairs[a]; }).forEach(function (k) {
      var gs = k.split(">");
      pair.appendChild(el("option", {value: k}, C[+gs[0]] + " \u2192 " + C[+gs[1]] +
                                                  " (" + pairs[k] + ")"));
    });
    var show = el("select", {id: "f-show"});
    [["all", "all images"], ["open", "not yet decided"], ["done", "decided"]].forEach(
      function (o) { show.appendChild(el("option", {value: o[0]}, o[1])); });
    [[cls, "cls"], [pair, "pair"], [show, "show"]].forEach(function (s) {
      s[0].addEventListener("change", function () {
        filters[s[1]] = s[0].value; applyFilters(false); render(); s[0].blur();
      });
      nav.appendChild(s[0]);
    });
    var button = el("button", {id: "export", type: "button"}, "Export corrections.csv");
    button.addEventListener("click", download);
    nav.appendChild(button);
  }

  // ------------------------------------------------------------------ drawing
  function label(d) {
    if (!d) { return ""; }
    if (d.decision === "invalid") { return "not a valid image"; }
    if (d.decision === "unsure") { return "unsure"; }
    return d.decision + ": " + C[d.label];
  }
  function render() {
    renderProgress();
    var card = document.getElementById("card");
    card.textContent = "";
    var it = current();
    if (!it) {
      card.appendChild(el("p", {"class": "muted"}, items.length ? "No image passes the filters."
        : "No flagged image in this run: nothing to review."));
      renderStrip();
      return;
    }
    if (it.img) { card.appendChild(el("img", {src: it.img, alt: it.name, "class": "big"})); }
    var info = el("div", {"class": "info"});
    info.appendChild(el("div", {"class": "name", title: it.path}, it.name + "  (#" + it.i + ")"));
    info.appendChild(el("div", {}, "given: ")).appendChild(el("b", {id: "given"}, C[it.given]));
    var s = info.appendChild(el("div", {}, it.agreed ? "suggested: " : "predicted: "));
    s.appendChild(el("b", {id: "sug"}, C[it.sug]));
    s.appendChild(document.createTextNode(" (" + pct(it.conf) + (it.agreed ? ", both peers agree)"
                                                                           : ")")));
    info.appendChild(el("div", {"class": "muted"}, "label quality " + it.q.toFixed(3)));
    it.peers.forEach(function (top, k) {
      info.appendChild(el("div", {"class": "muted"}, "peer " + (k + 1) + ": " + top.map(
        function (cp) { return C[cp[0]] + " " + pct(cp[1]); }).join(", ")));
    });
    var d = decisions[it.i];
    info.appendChild(el("div", {id: "decision", "class": d ? "done" : "muted"},
                        d ? label(d) : "undecided"));
    var other = el("select", {id: "pick", title: "any class (key c)"});
    other.appendChild(el("option", {value: ""}, "relabel as\u2026"));
    C.forEach(function (name, c) { other.appendChild(el("option", {value: String(c)}, name)); });
    other.addEventListener("change", function () { if (other.value !== "") { pick(+other.value); } });
    info.appendChild(el("div")).appendChild(other);
    info.appendChild(el("div", {"class": "muted"}, (cur + 1) + " / " + view.length + " shown"));
    card.appendChild(info);
    renderStrip();
  }
  function renderProgress() {
    var done = 0, verdicts = 0, wrong = 0;
    items.forEach(function (it) {
      var d = decisions[it.i];
      if (!d) { return; }
      done += 1;
      if (d.decision === "accept" || d.decision === "keep" || d.decision === "relabel") {
        verdicts += 1;
        if (d.label !== it.given) { wrong += 1; }
      }
    });
    var text = done + " reviewed of " + items.length;
    if (verdicts) {
      text += " \u2014 " + wrong + " of " + verdicts + " checked labels were wrong (" +
              pct(wrong / verdicts) + ")";
    }
    var p = document.getElementById("progress");
    p.textContent = text;
    p.setAttribute("data-done", done);
  }
  function renderStrip() {
    var strip = document.getElementById("strip");
    strip.textContent = "";
    var from = Math.max(0, cur - 10), to = Math.min(view.length, from + 30);
    for (var j = from; j < to; j++) {
      var it = items[view[j]], d = decisions[it.i];
      var cell = el("div", {"class": "cell" + (j === cur ? " cur" : ""), title: label(d) || it.name});
      if (it.img) { cell.appendChild(el("img", {src: it.img, alt: ""})); }
      cell.appendChild(el("span", {"class": "badge " + (d ? d.decision : "open")},
                          d ? d.decision : "\u00b7"));
      cell.addEventListener("click", (function (jj) { return function () { cur = jj; render(); }; })(j));
      strip.appendChild(cell);
    }
  }

  // ------------------------------------------------------------------ export
  function csvField(v) {
    v = String(v);
    return /[",\n\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function exportCsv() {
    var lines = ["path,index,given_label,decision,label"];
    items.forEach(function (it) {
      var d = decisions[it.i];
      if (!d) { return; }
      var name = d.label >= 0 && d.decision !== "invalid" && d.decision !== "unsure" ? C[d.label] : "";
      lines.push([it.path, it.i, C[it.given], d.decision, name].map(csvField).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function download() {
    var text = exportCsv();
    var a = el("a", {href: URL.createObjectURL(new Blob([text], {type: "text/csv"})),
                     download: "corrections.csv"});
    document.body.appendChild(a);
    a.click();
    a.remove();
    if (location.protocol === "http:") {  // `promix review --serve`: also saved in the run dir
      fetch("corrections.csv", {method: "POST", body: text}).catch(function () {});
    }
    return text;
  }

  // ------------------------------------------------------------------ keys
  var KEYS = {
    a: function () { var it = current(); if (it) { decide("accept", it.sug); } },
    k: function () { var it = current(); if (it) { decide("keep", it.given); } },
    x: function () { decide("invalid", -1); },
    u: function () { decide("unsure", -1); },
    n: function () { move(1); }, j: function () { move(1); }, ArrowRight: function () { move(1); },
    ArrowDown: function () { move(1); },
    p: function () { move(-1); }, ArrowLeft: function () { move(-1); },
    ArrowUp: function () { move(-1); },
    Backspace: clear, Delete: clear,
    e: download,
    c: function () { var p = document.getElementById("pick"); if (p) { p.focus(); } },
  };
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || /SELECT|INPUT|TEXTAREA/.test(ev.target.tagName)) {
      return;
    }
    if (/^[0-9]$/.test(ev.key)) { pick(ev.key === "0" ? 9 : +ev.key - 1); ev.preventDefault(); return; }
    var f = KEYS[ev.key];
    if (f) { f(); ev.preventDefault(); }
  });

  document.getElementById("help").textContent =
    "Keys: a accept the suggestion \u00b7 k keep the given label \u00b7 1-9, 0 pick class 1-10 (" +
    C.slice(0, 10).map(function (c, j) { return ((j + 1) % 10) + " " + c; }).join(", ") +
    "; c: any class) \u00b7 x not a valid image \u00b7 u unsure \u00b7 \u2192 / n / j next \u00b7 \u2190 / p previous" +
    " \u00b7 Backspace clear \u00b7 e export. Decisions are kept in this browser until you export." +
    (D.note ? " No thumbnails: " + D.note + "." : "");
  if (fromAddress || Object.keys(decisions).length) { save(); }  // both copies hold them now
  buildFilters();
  applyFilters(false);
  render();
  window.promixReview = {exportCsv: exportCsv, download: download,
                         decisions: function () { return decisions; }};
  document.body.setAttribute("data-ready", "1");
})();
