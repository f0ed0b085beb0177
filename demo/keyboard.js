// GEMEL Studio keyboard shortcuts (loaded through launch(head=...)).
// 1-9: pick that candidate · Enter: save the selected candidate (accept) · n: not in the KB.
// Nothing fires while the focus is in a text field, so typing a caption, a mention or a comment is safe.
// Only the controls of the visible tab react (hidden tabs have no offsetParent).
(function () {
  function visible(el) { return el && el.offsetParent !== null; }
  function shown(selector) {
    return Array.from(document.querySelectorAll(selector)).find(visible) || null;
  }
  function button(selector) {
    var el = shown(selector);
    if (!el) return null;
    return el.tagName === "BUTTON" ? el : el.querySelector("button");
  }
  function typing(target) {
    if (!target) return false;
    if (target.isContentEditable) return true;
    var tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag === "INPUT") {
      var kind = (target.type || "text").toLowerCase();
      return kind !== "radio" && kind !== "checkbox" && kind !== "button";
    }
    return false;
  }
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (typing(e.target)) return;
    var target = null;
    if (/^[1-9]$/.test(e.key)) {
      var group = shown(".gemel-cand-radio");
      var radios = group ? group.querySelectorAll("input[type=radio]") : [];
      target = radios[Number(e.key) - 1] || null;
    } else if (e.key === "Enter") {
      if (e.target && e.target.tagName === "BUTTON") return;  // the button itself handles Enter
      target = button(".gemel-accept");
    } else if (e.key === "n" || e.key === "N") {
      target = button(".gemel-nil");
    }
    if (target) {
      e.preventDefault();
      target.click();
    }
  });
})();
