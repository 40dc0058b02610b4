(function () {
  function copy(btn) {
    var pre = document.getElementById(btn.getAttribute('data-target'));
    if (!pre) return;
    var text = pre.textContent || '';
    function select() {
      var r = document.createRange(); r.selectNodeContents(pre);
      var s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
      try { document.execCommand('copy'); } catch (e) { /* selected for manual copy */ }
    }
    function done(label) { btn.textContent = label; setTimeout(function () { btn.textContent = 'Copy'; }, 1500); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done('Copied'); }, function () { select(); done('Selected'); });
    } else { select(); done('Selected'); }
  }
  document.querySelectorAll('button.copy').forEach(function (b) { b.addEventListener('click', function () { copy(b); }); });
  if (typeof vegaEmbed !== 'function') {
    document.body.setAttribute('data-embed', 'unavailable');
    return;
  }
  var figs = document.querySelectorAll('figure.chart[data-status="ok"]');
  var pending = figs.length;
  function settle() { if (--pending <= 0) document.body.setAttribute('data-embed', 'done'); }
  if (!pending) document.body.setAttribute('data-embed', 'done');
  figs.forEach(function (fig) {
    var target = fig.querySelector('.vega-target');
    var spec = JSON.parse(fig.querySelector('script.spec').textContent);
    vegaEmbed(target, spec, { renderer: 'svg', actions: { export: true, source: true, compiled: false, editor: false } })
      .then(function () {
        var s = fig.querySelector('.static'); if (s) s.parentNode.removeChild(s);
        fig.setAttribute('data-embedded', 'ok'); settle();
      })
      .catch(function (err) {
        fig.setAttribute('data-embedded', 'failed');
        var p = document.createElement('p'); p.className = 'note';
        p.textContent = 'The interactive chart failed (' + err + '); the static SVG below is shown instead.';
        fig.insertBefore(p, target); console.error(err); settle();
      });
  });
})();
