// The unit under a real systemd. CI runs in a container whose PID 1 is not
// systemd, so this test boots one: systemd-nspawn starts this machine's own
// systemd in a container whose root is a throwaway overlay of / (writes land
// in a tmpfs and vanish) and whose network is private (only its own
// loopback). Inside, a oneshot unit runs scripts/install exactly as an
// operator would (systemd running: daemon-reload, enable --now), then checks
// what the operator would: the service is active with its STATUS, takes a
// publish, reloads, survives watchdog periods while its loop runs, is killed
// and restarted when its loop stalls (SIGSTOP), and stops cleanly; all of it
// under the unit's full sandbox (ProtectSystem=strict, no capabilities,
// the syscall filter, ...), which no other test can apply.

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { REPO_ROOT } from '../helpers/child.ts'
import { runBounded } from '../helpers/run-bounded.ts'

const canBoot =
  process.getuid?.() === 0 &&
  (await runBounded('sh', ['-c', 'command -v systemd-nspawn && test -x /lib/systemd/systemd'])).code === 0

/** The checks, run inside the container as a oneshot unit; key=value lines on /result/check.log. */
const CHECK_SCRIPT = `#!/bin/sh
set -u
out=/result/check.log
say() { echo "$1=$2" >>"$out"; }
prop() { systemctl show tributary -p "$1" --value; }
"${REPO_ROOT}/scripts/install" >/result/install.log 2>&1
say install "$?"
say active "$(systemctl is-active tributary)"
say status "$(prop StatusText)"
mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -i s1 -t sensors/s1/t -m hello
say publish "$?"
systemctl reload tributary
say reload "$?"
sleep 1
say reloaded-status "$(prop StatusText)"
# A short watchdog for the test: pings every 1.5 s keep a running loop alive...
mkdir -p /etc/systemd/system/tributary.service.d
printf '[Service]\\nWatchdogSec=3s\\nRestartSec=1s\\nTimeoutAbortSec=5s\\n' >/etc/systemd/system/tributary.service.d/test.conf
systemctl daemon-reload
systemctl restart tributary
sleep 8
say alive-restarts "$(prop NRestarts)"
say alive-state "$(prop ActiveState)"
# ...and a stalled one is killed and started again.
stalled=$(prop MainPID)
kill -STOP "$stalled"
for _ in $(seq 60); do
  [ "$(prop NRestarts)" -ge 1 ] && [ "$(systemctl is-active tributary)" = active ] && break
  sleep 0.5
done
say stalled-restarts "$(prop NRestarts)"
say stalled-state "$(systemctl is-active tributary)"
say new-pid "$([ "$(prop MainPID)" != "$stalled" ] && echo yes || echo no)"
say tail "$(runuser -u tributary -- /opt/tributary/bin/tributary tail default --json | grep -c '"payload":"hello"')"
systemctl stop tributary
say stop-result "$(prop Result)"
say stop-exit "$(prop ExecMainStatus)"
journalctl -u tributary -o cat --no-pager >/result/journal.log
say done yes
systemctl poweroff
`

const CHECK_UNIT = `[Unit]
Description=tributary under systemd: install and check

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/trib-check
StandardOutput=journal
`

describe.skipIf(!canBoot)('the unit under a real systemd (systemd-nspawn)', () => {
  let work = ''
  let merged = ''
  let checks: Record<string, string> = {}
  let journal = ''
  let installLog = ''

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'tributary-nspawn-'))
    // The overlay's upper layer on its own tmpfs: an upper dir on / inside the lower / is refused.
    const layers = join(work, 'layers')
    merged = join(work, 'root')
    const result = join(work, 'result')
    await mkdir(layers)
    await mkdir(merged)
    await mkdir(result)
    const mount = async (args: string[]) => {
      const r = await runBounded('mount', args)
      expect(r.code, r.stderr).toBe(0)
    }
    await mount(['-t', 'tmpfs', '-o', 'size=1g', 'tmpfs', layers])
    await mkdir(join(layers, 'upper'))
    await mkdir(join(layers, 'work'))
    await mount([
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=/,upperdir=${join(layers, 'upper')},workdir=${join(layers, 'work')}`,
      merged,
    ])
    await writeFile(join(merged, 'usr', 'local', 'sbin', 'trib-check'), CHECK_SCRIPT, { mode: 0o755 })
    await writeFile(join(merged, 'etc', 'systemd', 'system', 'trib-check.service'), CHECK_UNIT)
    const boot = await runBounded(
      'systemd-nspawn',
      [
        '--quiet',
        `--directory=${merged}`,
        `--machine=tributary-test-${process.pid}`,
        '--private-network',
        '--link-journal=no',
        '--register=no',
        '--keep-unit',
        `--bind=${result}:/result`,
        // The checkout (it may live on another mount than /, which the overlay does not show).
        `--bind=${REPO_ROOT}`,
        '--boot',
        '--',
        // Boot only what the check needs, not every service this machine enables.
        'systemd.unit=trib-check.service',
      ],
      { timeoutMs: 240_000 },
    )
    const text = await readFile(join(result, 'check.log'), 'utf8').catch(() => '')
    checks = Object.fromEntries(
      text
        .trim()
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    )
    journal = await readFile(join(result, 'journal.log'), 'utf8').catch(() => '')
    installLog = await readFile(join(result, 'install.log'), 'utf8').catch(() => '')
    expect(checks.done, `nspawn: ${boot.stdout.slice(-3000)}\n${boot.stderr}\ninstall: ${installLog}`).toBe(
      'yes',
    )
  }, 300_000)

  afterAll(async () => {
    if (work === '') return
    for (const dir of [merged, join(work, 'layers')]) await runBounded('umount', [dir])
    await rm(work, { recursive: true, force: true })
  })

  test('scripts/install enables and starts it; READY=1 makes it active with its STATUS', () => {
    expect(checks.install, installLog).toBe('0')
    expect(installLog).toMatch(/tributary is active/)
    expect(checks.active).toBe('active')
    expect(checks.status).toBe('accepting MQTT connections on 0.0.0.0:1883')
  })

  test('it stores a publish and reloads on systemctl reload', () => {
    expect(checks.publish).toBe('0')
    expect(checks.tail).toBe('1')
    expect(checks.reload).toBe('0')
    expect(checks['reloaded-status']).toMatch(/SIGHUP at .*: 0 change\(s\) applied, 0 need a restart$/)
    expect(journal).toMatch(/"msg":"SIGHUP: configuration reloaded"/)
  })

  test('the watchdog keeps a running loop alive and restarts a stalled one', () => {
    expect(checks['alive-restarts']).toBe('0')
    expect(checks['alive-state']).toBe('active')
    expect(Number(checks['stalled-restarts'])).toBeGreaterThanOrEqual(1)
    expect(checks['stalled-state']).toBe('active')
    expect(checks['new-pid']).toBe('yes')
    expect(journal).toMatch(/Watchdog timeout/)
  })

  test('systemctl stop drains and exits 0', () => {
    expect(checks['stop-result']).toBe('success')
    expect(checks['stop-exit']).toBe('0')
    expect(journal).toMatch(/"msg":"tributary stopped"/)
  })
})
