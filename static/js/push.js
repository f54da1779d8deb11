// Push an image to a registry with one progress bar per layer (layers.js).
(function () {
  "use strict";
  const form = document.getElementById("push-form");
  if (!form) return;
  window.estibaLayers(form, () => ({ image: form.dataset.image, target: form.target.value.trim() }),
    (msg) => msg.target + (msg.digest ? " — " + msg.digest : ""));
})();
