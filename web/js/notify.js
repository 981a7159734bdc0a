// Browser notifications, opt-in: a host that went offline, a compile error,
// the end of a chosen host's build (builds.js).

import { el } from 'icewatch/dom.js';

let notifying = localStorage.getItem('icewatch.notify') === 'on' && 'Notification' in window && Notification.permission === 'granted';

/** The header's button that turns notifications on and off (hidden where the browser has none). */
export function setupNotifications() {
  const button = el('notify');
  const show = () => { button.setAttribute('aria-pressed', String(notifying)); button.textContent = 'Notify: ' + (notifying ? 'on' : 'off'); };
  if (!('Notification' in window)) { button.hidden = true; return; }
  button.addEventListener('click', async () => {
    if (!notifying && Notification.permission !== 'granted') await Notification.requestPermission();
    notifying = !notifying && Notification.permission === 'granted';
    localStorage.setItem('icewatch.notify', notifying ? 'on' : 'off');
    show();
  });
  show();
}

/** Tells of what a diff brought (`events` of model.receive); `serverOf(job)` names a job's server. */
export function notify({ offline, failed }, serverOf) {
  if (!notifying) return;
  for (const h of offline) new Notification(`icewatch: ${h.name || 'host ' + h.id} went offline`, { body: h.ip, tag: 'host-' + h.id });
  // Only compile errors: a job cut short (its host left, the scheduler went
  // away) has no verdict. Before icewatch said why a job ended (`reason`),
  // a host that left failed its jobs with exit code 255.
  const compileErrors = failed.filter((j) => (j.reason ? j.reason === 'exit' : j.exit_code !== 255));
  if (compileErrors.length === 1) {
    const j = compileErrors[0];
    new Notification(`icewatch: job failed on ${serverOf(j) ?? '?'}`, { body: `${j.file} (exit ${j.exit_code})`, tag: 'job-' + j.id });
  } else if (compileErrors.length > 1) {
    new Notification(`icewatch: ${compileErrors.length} jobs failed`, { body: compileErrors.map((j) => j.file).slice(0, 4).join('\n'), tag: 'jobs-failed' });
  }
}

/** Tells that `build` (of GET /api/v1/builds) ended, with its one-line `summary`. */
export function notifyBuild(build, summary) {
  if (!notifying) return;
  new Notification(`icewatch: ${build.host}'s build ended`, { body: summary, tag: `build-${build.host}-${build.start_ms}` });
}
