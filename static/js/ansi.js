// ANSI colours in log output, rendered safely: text only ever goes through
// textContent; SGR codes (ESC[...m) become CSS classes; any other escape
// sequence is dropped.
(function () {
  "use strict";
  const SEQ = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b./g;

  function apply(state, params) {
    const codes = params === "" ? [0] : params.split(";").map((n) => parseInt(n, 10) || 0);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { state.fg = null; state.bg = null; state.bold = false; state.under = false; }
      else if (c === 1) state.bold = true;
      else if (c === 4) state.under = true;
      else if (c === 22) state.bold = false;
      else if (c === 24) state.under = false;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
      else if (c === 39) state.fg = null;
      else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) state.bg = c;
      else if (c === 49) state.bg = null;
      else if (c === 38 || c === 48) { i += codes[i + 1] === 5 ? 2 : 4; }
    }
  }

  // Append `text` to `parent` as coloured spans; `state` carries over between calls.
  function render(parent, text, state) {
    state = state || {};
    let last = 0;
    const push = (chunk) => {
      if (!chunk) return;
      const span = document.createElement("span");
      const cls = [];
      if (state.fg) cls.push("a" + state.fg);
      if (state.bg) cls.push("a" + state.bg);
      if (state.bold) cls.push("ab");
      if (state.under) cls.push("au");
      if (cls.length) span.className = cls.join(" ");
      span.textContent = chunk;
      parent.appendChild(span);
    };
    text.replace(SEQ, (m, params, final, offset) => {
      push(text.slice(last, offset));
      if (final === "m") apply(state, params || "");
      last = offset + m.length;
      return m;
    });
    push(text.slice(last));
    return state;
  }

  window.estibaAnsi = { render };
})();
