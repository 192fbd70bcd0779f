/* The book's runtime fixes (added by coursetools.sphinxext; tested by tests/test_site*.py).
   Plain ES5, no network; one global, gradflowTexToText, for the tests. */
(function () {
  "use strict";

  /* 1. Formulas fit their column. MathJax 3 cannot break lines, so a display (or inline) formula
     wider than its column is scaled down (its font size) until it fits, with its number beside it.
     Re-done when the column changes width (rotation, sidebar toggled). */
  function roomFor(c) {
    if (c.getAttribute("display") === "true") return c.clientWidth;
    var block = c.parentElement;
    while (block && getComputedStyle(block).display.indexOf("inline") === 0) block = block.parentElement;
    if (!block) return 0;
    var cs = getComputedStyle(block);
    return block.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  }

  function fit(c) {
    var m = c.querySelector(":scope > mjx-math");
    if (!m) return;
    m.style.fontSize = "";
    c.classList.remove("gf-scaled");
    var room = roomFor(c), need = m.getBoundingClientRect().width;
    if (room > 0 && need > room + 0.5) {
      m.style.fontSize = (100 * Math.floor(1000 * room / need) / 1000).toFixed(1) + "%";
      c.classList.add("gf-scaled");
    }
  }

  function fitAll() {
    var cs = document.querySelectorAll("mjx-container");
    for (var i = 0; i < cs.length; i++) fit(cs[i]);
    document.documentElement.setAttribute("data-gf-math-fitted", String(cs.length));
  }

  function watchMath() {
    var mj = window.MathJax;
    if (!mj || !mj.startup || !mj.startup.promise) return;
    mj.startup.promise.then(function () {
      fitAll();
      if (window.ResizeObserver) {
        var last = document.documentElement.clientWidth;
        var article = document.querySelector("article") || document.body;
        new ResizeObserver(function () {
          var w = article.clientWidth;
          if (w !== last) { last = w; fitAll(); }
        }).observe(article);
      }
    });
  }

  /* 2. Live Code explains itself when thebe (from a CDN) or Binder cannot be reached. */
  var THEBE_WAIT_MS = 20000;
  function thebeOffline(why) {
    var button = document.querySelector(".thebe-launch-button");
    if (!button || document.querySelector(".gf-thebe-offline")) return;
    button.textContent = "Live Code is unavailable";
    button.disabled = true;
    var note = document.createElement("p");
    note.className = "gf-thebe-offline";
    note.setAttribute("role", "alert");
    note.textContent = "Live Code could not start: " + why + " It runs the page's code on " +
      "mybinder.org and needs an internet connection. Everything on this page still works; to " +
      "run the code yourself, download the notebook (the download button at the top of the page) " +
      "or open it on Colab or Binder when you are online.";
    button.insertAdjacentElement("afterend", note);
  }

  function watchThebe() {
    // the thebe library is loaded from a CDN only when the reader clicks "Live Code"
    window.addEventListener("error", function (e) {
      var t = e.target;
      if (t && t.tagName === "SCRIPT" && /thebe/i.test(t.src || "")) {
        thebeOffline("the Live Code library could not be downloaded.");
      }
    }, true);
    document.addEventListener("click", function (e) {
      var t = e.target && e.target.closest && e.target.closest("[onclick*='initThebe'], .thebe-launch-button");
      if (!t) return;
      setTimeout(function () {
        if (typeof window.thebelab === "undefined" && document.querySelector(".thebe-launch-button")) {
          thebeOffline("the Live Code library did not load within " + THEBE_WAIT_MS / 1000 + " seconds.");
        }
      }, THEBE_WAIT_MS);
    }, true);
  }

  /* 3. Search snippets show formulas as text (σ′(z) ≤ 1/4), not as TeX source. */
  var SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", zeta: "ζ",
    eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", xi: "ξ", pi: "π", rho: "ρ",
    sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", chi: "χ", psi: "ψ", omega: "ω", Gamma: "Γ",
    Delta: "Δ", Theta: "Θ", Lambda: "Λ", Sigma: "Σ", Phi: "Φ", Psi: "Ψ", Omega: "Ω",
    cdot: "·", times: "×", le: "≤", leq: "≤", ge: "≥", geq: "≥", approx: "≈", ne: "≠", neq: "≠",
    to: "→", rightarrow: "→", leftarrow: "←", mapsto: "↦", infty: "∞", partial: "∂", nabla: "∇",
    sum: "Σ", prod: "∏", in: "∈", pm: "±", ll: "≪", gg: "≫", sim: "∼", propto: "∝", top: "ᵀ",
    prime: "′", ldots: "…", cdots: "⋯", dots: "…", odot: "⊙", circ: "∘", log: "log", exp: "exp",
    max: "max", min: "min", sqrt: "√", mid: "|", lvert: "|", rvert: "|", lVert: "‖", rVert: "‖",
    langle: "⟨", rangle: "⟩", equiv: "≡", forall: "∀", exists: "∃"
  };

  function texToText(tex) {
    var s = tex.replace(/^\s*(\\\(|\\\[|\$\$?)/, "").replace(/(\\\)|\\\]|\$\$?)\s*$/, "");
    s = s.replace(/\\(begin|end)\{[^}]*\}/g, " ").replace(/\\\\|&/g, " ");
    s = s.replace(/\\(left|right|big|Big|bigg|Bigg)\b\.?/g, "");
    s = s.replace(/\\(mathrm|mathbf|mathit|mathcal|mathbb|boldsymbol|operatorname|text|textrm|textbf)\s*\{([^{}]*)\}/g, "$2");
    var group = function (x) { x = x.trim(); return /^[\w.′']+$/.test(x) ? x : "(" + x + ")"; };
    for (var i = 0; i < 4; i++) {
      s = s.replace(/\\[td]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, function (m, a, b) {
        return group(a) + "/" + group(b);
      });
      s = s.replace(/\\sqrt\s*\{([^{}]*)\}/g, function (m, a) { return "√" + group(a); });
    }
    s = s.replace(/\\([A-Za-z]+)/g, function (m, w) { return SYMBOLS.hasOwnProperty(w) ? SYMBOLS[w] : w; });
    s = s.replace(/\\[,;:! ]/g, " ").replace(/\\([{}_%#$])/g, "$1").replace(/\\/g, "");
    s = s.replace(/[{}]/g, "").replace(/\s+/g, " ");
    return s.trim();
  }

  function watchSearch() {
    // Sphinx's searchtools.js declares `const Search` at the top level: a global binding that is
    // not a property of window.
    var S = typeof Search !== "undefined" ? Search : window.Search;  // eslint-disable-line no-undef
    if (!S || typeof S.htmlToText !== "function" || S.htmlToText.gfPlain) return;
    var original = S.htmlToText;
    var plain = function (htmlString, anchor) {
      try {
        var doc = new DOMParser().parseFromString(htmlString, "text/html");
        var maths = doc.querySelectorAll(".math");
        for (var i = 0; i < maths.length; i++) {
          maths[i].querySelectorAll(".eqno").forEach(function (n) { n.remove(); });
          maths[i].textContent = " " + texToText(maths[i].textContent) + " ";
        }
        htmlString = doc.documentElement.outerHTML;
      } catch (err) { /* keep the original text */ }
      return original.call(this, htmlString, anchor);
    };
    plain.gfPlain = true;
    S.htmlToText = plain;
  }

  window.gradflowTexToText = texToText;  // for the site tests

  function start() {
    watchThebe();
    watchSearch();
    if (document.readyState === "complete") watchMath();
    else window.addEventListener("load", watchMath);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
