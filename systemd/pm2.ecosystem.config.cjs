// pm2 process file for hosts without systemd (containers, some SBC images).
// It runs the release scripts/install put in /opt/tributary, with its pinned
// Node runtime, as the `tributary` user when pm2 runs as root:
//
//   pm2 start /opt/tributary/systemd/pm2.ecosystem.config.cjs
//   pm2 logs tributary                  # JSON lines (pino)
//   pm2 sendSignal SIGHUP tributary     # reload: logLevel and retention now
//   pm2 stop tributary                  # SIGINT, then SIGKILL after kill_timeout
//   pm2 save && pm2 startup             # start again at boot
//
// pm2 has no readiness or watchdog protocol: NOTIFY_SOCKET is not set, so
// tributary sends no notifications, and a stalled event loop is not restarted
// (systemd's WatchdogSec does that). pm2 restarts it when it exits non-zero.
'use strict'

const prefix = process.env.TRIBUTARY_PREFIX || '/opt/tributary'

module.exports = {
  apps: [
    {
      name: 'tributary',
      script: `${prefix}/dist/cli/main.js`,
      args: ['start'],
      interpreter: `${prefix}/runtime/bin/node`,
      // The same V8 flags as bin/tributary and the systemd unit.
      node_args: ['--max-semi-space-size=2', '--heap-growing-percent=100'],
      cwd: '/var/lib/tributary',
      // pm2 runs processes as the user it runs as; as root, drop to tributary.
      ...(process.getuid && process.getuid() === 0 ? { uid: 'tributary', gid: 'tributary' } : {}),
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      // Exit code 0 is a clean stop (SIGTERM/SIGINT); 2 is a bad configuration,
      // which a restart does not fix.
      stop_exit_codes: [0, 2],
      restart_delay: 2000,
      exp_backoff_restart_delay: 2000,
      max_restarts: 10,
      min_uptime: 10000,
      // Shutdown finishes in-flight appends first; the systemd unit allows 90 s.
      kill_timeout: 90000,
      // Not pm2's cluster mode or file watching: one process owns the data directory.
      watch: false,
      merge_logs: true,
      time: false,
      env: {
        TRIBUTARY_CONFIG: '/etc/tributary/tributary.yaml',
        NODE_ENV: 'production',
      },
    },
  ],
}
