// Pull an image with one progress bar per layer (layers.js), then offer to run it.
(function () {
  "use strict";
  const form = document.getElementById("pull-form");
  if (!form) return;
  const done = document.getElementById("pull-done");
  form.addEventListener("submit", () => { done.hidden = true; });
  window.estibaLayers(form, () => ({ ref: form.ref.value.trim() }), (msg) => {
    const ref = form.ref.value.trim();
    done.hidden = false;
    document.getElementById("pull-run").href = "/containers/new/?image=" + encodeURIComponent(ref);
    return (msg.image && msg.image.Id ? msg.image.Id.slice(0, 19) + " — " : "") + ref;
  });
})();
