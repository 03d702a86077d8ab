// The service as an operator installs it, in a throwaway root directory:
// scripts/install puts the release, its runtime, the unit, the config and the
// directories in place with their permissions, a second run changes nothing
// and keeps an edited config, the installed release starts on its own
// node_modules, systemd-analyze accepts the unit, and scripts/uninstall
// removes the release but keeps data and config unless --purge.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import {
  chmod,
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { REPO_ROOT } from '../helpers/child.ts'
import { Cleanup } from '../helpers/integration.ts'
import { type Finished, runBounded } from '../helpers/run-bounded.ts'

const shared = new Cleanup()
afterAll(() => shared.run())

const INSTALL = join(REPO_ROOT, 'scripts', 'install')
const UNINSTALL = join(REPO_ROOT, 'scripts', 'uninstall')

function ok(result: Finished): Finished {
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0)
  return result
}

/** Every path under dir with its type, mode and size (file contents for small files), sorted. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = []
  async function walk(path: string): Promise<void> {
    const info = await lstat(path)
    const mode = (info.mode & 0o7777).toString(8)
    const rel = relative(dir, path) || '.'
    if (info.isSymbolicLink()) out.push(`${rel} -> ${await readlink(path)}`)
    else if (info.isDirectory()) {
      out.push(`${rel}/ ${mode}`)
      for (const entry of await readdir(path)) await walk(join(path, entry))
    } else out.push(`${rel} ${mode} ${info.size}`)
  }
  await walk(dir)
  return out.sort()
}

async function mode(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o7777).toString(8)
}

/** A root directory that systemd-analyze can verify a unit in: the system's units, /bin/kill, the runtime. */
async function verifyRoot(root: string): Promise<void> {
  await mkdir(join(root, 'usr', 'lib', 'systemd'), { recursive: true })
  await cp('/usr/lib/systemd/system', join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true })
  await mkdir(join(root, 'usr', 'bin'), { recursive: true })
  await cp('/usr/bin/kill', join(root, 'usr', 'bin', 'kill'))
  await symlink('usr/bin', join(root, 'bin')).catch(() => undefined)
}

async function analyzeVerify(root: string): Promise<Finished> {
  return runBounded('systemd-analyze', ['verify', `--root=${root}`, 'tributary.service'], {
    timeoutMs: 60_000,
  })
}

describe('systemd/tributary.service', () => {
  test('systemd-analyze verify accepts the unit, and catches a broken one', async () => {
    const root = await shared.dir('tributary-unit-')
    await verifyRoot(root)
    await mkdir(join(root, 'opt', 'tributary', 'runtime', 'bin'), { recursive: true })
    await cp(process.execPath, join(root, 'opt', 'tributary', 'runtime', 'bin', 'node'))
    await mkdir(join(root, 'etc', 'systemd', 'system'), { recursive: true })
    const unitPath = join(root, 'etc', 'systemd', 'system', 'tributary.service')
    const unit = await readFile(join(REPO_ROOT, 'systemd', 'tributary.service'), 'utf8')
    await writeFile(unitPath, unit)
    const good = await analyzeVerify(root)
    expect({ code: good.code, stderr: good.stderr, stdout: good.stdout }).toEqual({
      code: 0,
      stderr: '',
      stdout: '',
    })

    // The check can fail: a misspelt key and a bad value are reported.
    await writeFile(
      unitPath,
      unit
        .replace('ProtectSystem=strict', 'ProtectSytem=strict')
        .replace('WatchdogSec=30s', 'WatchdogSec=soon'),
    )
    const bad = await analyzeVerify(root)
    expect(bad.stderr).toMatch(/Unknown key 'ProtectSytem'/)
    expect(bad.stderr).toMatch(/Failed to parse sec value.*soon/)
  })
})

describe('scripts/install and scripts/uninstall in a temp root', () => {
  let root = ''
  let first: string[] = []

  beforeAll(async () => {
    root = await shared.dir('tributary-install-')
    ok(await runBounded(INSTALL, ['--root', root], { timeoutMs: 180_000 }))
    first = await snapshot(root)
  }, 200_000)

  test('puts the release, runtime, unit, config and directories in place', async () => {
    const opt = join(root, 'opt', 'tributary')
    expect(await mode(join(opt, 'runtime', 'bin', 'node'))).toBe('755')
    for (const path of [
      'dist/cli/main.js',
      'bin/tributary',
      'package.json',
      'node_modules/lmdb/package.json',
    ])
      expect((await stat(join(opt, path))).isFile(), path).toBe(true)
    // Production dependencies only.
    for (const dev of ['vitest', 'typescript', '@biomejs'])
      await expect(stat(join(opt, 'node_modules', dev)), dev).rejects.toThrow()
    // Nothing in the release is writable by anyone but its owner.
    const writable = first.filter(
      (line) =>
        line.startsWith('opt/') &&
        !line.includes(' -> ') &&
        (Number.parseInt(line.split(' ')[1] ?? '0', 8) & 0o022) !== 0,
    )
    expect(writable).toEqual([])
    expect(await readlink(join(root, 'usr', 'local', 'bin', 'tributary'))).toBe(
      '/opt/tributary/bin/tributary',
    )
    expect(await mode(join(root, 'var', 'lib', 'tributary'))).toBe('750')
    expect(await mode(join(root, 'etc', 'tributary'))).toBe('750')
    expect(await mode(join(root, 'etc', 'tributary', 'tributary.yaml'))).toBe('640')
    expect(await mode(join(root, 'etc', 'default', 'tributary'))).toBe('644')
    expect(await mode(join(root, 'etc', 'systemd', 'system', 'tributary.service'))).toBe('644')
    expect(await readFile(join(root, 'etc', 'systemd', 'system', 'tributary.service'), 'utf8')).toBe(
      await readFile(join(REPO_ROOT, 'systemd', 'tributary.service'), 'utf8'),
    )
    expect(await readFile(join(root, 'etc', 'default', 'tributary'), 'utf8')).toBe(
      await readFile(join(REPO_ROOT, 'systemd', 'tributary.env.example'), 'utf8'),
    )
  })

  test('the default config passes `config check`, and so does every example in it uncommented', async () => {
    const cli = join(root, 'opt', 'tributary', 'bin', 'tributary')
    const config = join(root, 'etc', 'tributary', 'tributary.yaml')
    expect(ok(await runBounded(cli, ['config', 'check', config])).stdout).toMatch(/: ok/)
    const text = await readFile(config, 'utf8')
    const settings = text.split('\n').flatMap((line) => {
      const m = /^#( *(- )?[A-Za-z]+:.*)$/.exec(line)
      return m?.[1] === undefined ? [] : [m[1]]
    })
    expect(settings.length).toBeGreaterThan(15)
    const uncommented = join(root, 'uncommented.yaml')
    await writeFile(uncommented, `${settings.join('\n')}\n`)
    ok(await runBounded(cli, ['config', 'check', uncommented]))
  })

  test('the installed release starts on its own runtime and node_modules, and stops on SIGTERM', async () => {
    const opt = join(root, 'opt', 'tributary')
    const dataDir = await shared.dir('tributary-installed-data-')
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRIBUTARY_')))
    const child = spawn(
      join(opt, 'runtime', 'bin', 'node'),
      [
        join(opt, 'dist', 'cli', 'main.js'),
        'start',
        '--config',
        join(root, 'etc', 'tributary', 'tributary.yaml'),
        '--data-dir',
        dataDir,
        '--mqtt-host',
        '127.0.0.1',
        '--mqtt-port',
        '0',
      ],
      { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const exited = once(child, 'exit')
    shared.defer('kill the installed broker', async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        process.kill(child.pid, 'SIGKILL')
        await exited
      }
    })
    const lines = createInterface({ input: child.stdout })
    let listening = false
    for await (const line of lines) {
      if (line.includes('tributary accepting MQTT connections')) {
        listening = true
        break
      }
    }
    expect(listening).toBe(true)
    if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
    const [code] = await exited
    expect(code).toBe(0)
  })

  test('systemd-analyze verify accepts the installed unit in the installed root', async () => {
    const root2 = await shared.dir('tributary-install-verify-')
    await cp(root, root2, { recursive: true, verbatimSymlinks: true })
    await verifyRoot(root2)
    const result = await analyzeVerify(root2)
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' })
  })

  test('the pm2 ecosystem file points at the installed runtime and release', async () => {
    const opt = join(root, 'opt', 'tributary')
    const result = ok(
      await runBounded(
        process.execPath,
        [
          '-p',
          `JSON.stringify(require(${JSON.stringify(join(opt, 'systemd', 'pm2.ecosystem.config.cjs'))}).apps)`,
        ],
        {
          env: { TRIBUTARY_PREFIX: opt },
        },
      ),
    )
    const [app] = JSON.parse(result.stdout) as Array<{ script: string; interpreter: string; args: string[] }>
    expect(app?.args).toEqual(['start'])
    expect((await stat(app?.script ?? '')).isFile()).toBe(true)
    expect((await stat(app?.interpreter ?? '')).isFile()).toBe(true)
  })

  test('a second run gives the same tree and keeps an edited config', async () => {
    const config = join(root, 'etc', 'tributary', 'tributary.yaml')
    const edited = `${await readFile(config, 'utf8')}logLevel: debug\n`
    await writeFile(config, edited)
    await writeFile(join(root, 'var', 'lib', 'tributary', 'node-id'), 'kept\n')
    const before = await snapshot(root)
    ok(await runBounded(INSTALL, ['--root', root], { timeoutMs: 180_000 }))
    expect(await snapshot(root)).toEqual(before)
    expect(await readFile(config, 'utf8')).toBe(edited)
  }, 200_000)

  test('uninstall removes the release and the unit, keeps data and config; --purge removes them too', async () => {
    ok(await runBounded(UNINSTALL, ['--root', root]))
    for (const gone of ['opt/tributary', 'etc/systemd/system/tributary.service', 'usr/local/bin/tributary'])
      await expect(lstat(join(root, gone)), gone).rejects.toThrow()
    expect(await readFile(join(root, 'var', 'lib', 'tributary', 'node-id'), 'utf8')).toBe('kept\n')
    expect((await stat(join(root, 'etc', 'tributary', 'tributary.yaml'))).isFile()).toBe(true)
    expect((await stat(join(root, 'etc', 'default', 'tributary'))).isFile()).toBe(true)

    ok(await runBounded(UNINSTALL, ['--root', root, '--purge']))
    for (const gone of ['var/lib/tributary', 'etc/tributary', 'etc/default/tributary'])
      await expect(lstat(join(root, gone)), gone).rejects.toThrow()
  })
})

describe('scripts/install on armv7l', () => {
  /** A PATH on which `uname -m` says armv7l, as on a Raspberry Pi 2/3 with a 32-bit OS. */
  async function armv7Path(dir: string): Promise<string> {
    const bin = join(dir, 'fake-bin')
    await mkdir(bin)
    await writeFile(
      join(bin, 'uname'),
      '#!/bin/sh\nif [ "$1" = -m ]; then echo armv7l; else exec /usr/bin/uname "$@"; fi\n',
    )
    await chmod(join(bin, 'uname'), 0o755)
    return `${bin}:${process.env.PATH ?? ''}`
  }

  test('refuses without --runtime and says what to do; installs the given runtime with it', async () => {
    const dir = await shared.dir('tributary-armv7-')
    const PATH = await armv7Path(dir)
    const root = join(dir, 'root')
    const refused = await runBounded(INSTALL, ['--root', root], { env: { PATH } })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/no Node.js 24 for armv7l in the npm registry/)
    expect(refused.stderr).toMatch(/--runtime DIR/)
    await expect(stat(join(root, 'opt', 'tributary'))).rejects.toThrow()

    // An extracted official tarball: bin/node (here this machine's Node, standing in for one).
    const runtime = join(dir, 'node-v24-linux-armv7l')
    await mkdir(join(runtime, 'bin'), { recursive: true })
    await cp(process.execPath, join(runtime, 'bin', 'node'))
    ok(
      await runBounded(INSTALL, ['--root', root, '--runtime', runtime], {
        env: { PATH },
        timeoutMs: 180_000,
      }),
    )
    expect((await stat(join(root, 'opt', 'tributary', 'runtime', 'bin', 'node'))).size).toBe(
      (await stat(process.execPath)).size,
    )
  }, 200_000)
})

describe('scripts/install on / (in a private mount namespace)', () => {
  // /etc, /opt, /var and /usr/local are overlays whose writes land in a temp
  // directory and vanish with the namespace: the real system path (the user,
  // ownership, the no-systemd message, uninstall --purge) runs without
  // touching this machine.
  const script = (work: string) => `
set -euo pipefail
for d in etc opt var usr/local; do
  mkdir -p "${work}/$d/upper" "${work}/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=${work}/$d/upper,workdir=${work}/$d/work" "/$d"
done
"${INSTALL}" >"${work}/install1.log"
echo "user=$(getent passwd tributary | cut -d: -f1,6,7)"
for p in /var/lib/tributary /etc/tributary /etc/tributary/tributary.yaml /opt/tributary /opt/tributary/dist/cli/main.js /etc/systemd/system/tributary.service; do
  echo "stat $p=$(stat -c '%U:%G %a' "$p")"
done
echo "config=$(/usr/local/bin/tributary config check /etc/tributary/tributary.yaml)"
# As the unit runs it: the tributary user, the installed runtime and release,
# the installed config, the data in /var/lib/tributary.
cd /var/lib/tributary
setpriv --reuid=tributary --regid=tributary --init-groups --reset-env \
  /opt/tributary/runtime/bin/node --max-semi-space-size=2 --heap-growing-percent=100 /opt/tributary/dist/cli/main.js start \
  --mqtt-host 127.0.0.1 --mqtt-port 0 >"${work}/service.log" 2>&1 &
service=$!
for _ in $(seq 200); do
  grep -q 'accepting MQTT connections' "${work}/service.log" && break
  kill -0 "$service" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "$service" 2>/dev/null || true
set +e; wait "$service"; echo "service-exit=$?"; set -e
echo "service-data=$(stat -c '%U' /var/lib/tributary/node-id)"
cd /
"${INSTALL}" >"${work}/install2.log"
echo "second=ok"
"${UNINSTALL}" --purge >"${work}/uninstall.log"
echo "after-purge=$(getent passwd tributary || echo none) $(ls -d /var/lib/tributary /etc/tributary /opt/tributary 2>/dev/null | wc -l)"
`

  test.skipIf(process.getuid?.() !== 0)(
    'creates the tributary user, which runs the installed release on its data dir; the release stays root-owned; --purge removes it all',
    async () => {
      const hostHadUser = (await runBounded('getent', ['passwd', 'tributary'])).code === 0
      const work = await shared.dir('tributary-system-install-')
      const result = ok(
        await runBounded('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script(work)], {
          timeoutMs: 180_000,
        }),
      )
      const lines = Object.fromEntries(
        result.stdout
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      )
      expect(lines).toEqual({
        user: 'tributary:/var/lib/tributary:/usr/sbin/nologin',
        'stat /var/lib/tributary': 'tributary:tributary 750',
        'stat /etc/tributary': 'root:tributary 750',
        'stat /etc/tributary/tributary.yaml': 'root:tributary 640',
        'stat /opt/tributary': 'root:root 755',
        'stat /opt/tributary/dist/cli/main.js': 'root:root 644',
        'stat /etc/systemd/system/tributary.service': 'root:root 644',
        config: '/etc/tributary/tributary.yaml: ok',
        'service-exit': '0',
        'service-data': 'tributary',
        second: 'ok',
        'after-purge': 'none 0',
      })
      expect(await readFile(join(work, 'service.log'), 'utf8')).toMatch(
        /"dataDir":"\/var\/lib\/tributary".*\n(.*\n)*.*accepting MQTT connections/,
      )
      const install1 = await readFile(join(work, 'install1.log'), 'utf8')
      expect(install1).toMatch(/created system user tributary/)
      expect(install1).toMatch(/systemd is not running here .* so nothing was started/)
      expect(await readFile(join(work, 'install2.log'), 'utf8')).toMatch(
        /kept \/etc\/tributary\/tributary.yaml/,
      )
      // The machine itself is as it was.
      expect((await runBounded('getent', ['passwd', 'tributary'])).code === 0).toBe(hostHadUser)
    },
    200_000,
  )
})
