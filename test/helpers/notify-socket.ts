// A stand-in for systemd's notification socket: a unix datagram socket that
// the test listens on (Node has none, so python3's socket module receives),
// and every message that arrived, in order. Killed by its pid in `close()`.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"listening": sys.argv[1]}), flush=True)
while True:
    # recv() takes no ancillary data: the kernel closes the fd of systemd-notify's
    # BARRIER=1 message, which is how systemd tells it the message was read.
    data = s.recv(65536)
    print(json.dumps({"message": data.decode("utf-8", "replace")}), flush=True)
`

export interface NotifyMessage {
  /** VARIABLE=VALUE lines of one datagram, as a map. */
  readonly fields: ReadonlyMap<string, string>
  readonly receivedAt: number
}

export interface NotifySocket {
  readonly path: string
  /** Every datagram but systemd-notify's BARRIER=1 handshakes. */
  readonly messages: NotifyMessage[]
  /** Called for each message as it arrives (after it was added to `messages`). */
  onMessage: ((message: NotifyMessage) => void) | null
  close(): Promise<void>
}

export async function listenNotifySocket(dir: string): Promise<NotifySocket> {
  const path = join(dir, 'notify.sock')
  const child: ChildProcess = spawn('python3', ['-u', '-c', RECEIVER, path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = once(child, 'exit')
  const socket: NotifySocket = {
    path,
    messages: [],
    onMessage: null,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
      await exited
    },
  }
  await new Promise<void>((resolve, reject) => {
    exited.then(() => reject(new Error('the notify socket receiver exited')))
    if (child.stdout === null) return reject(new Error('no stdout'))
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as { listening?: string; message?: string }
      if (entry.listening !== undefined) return resolve()
      if (entry.message === undefined) return
      const fields = new Map(
        entry.message
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]),
      )
      if (fields.has('BARRIER')) return
      const message = { fields, receivedAt: Date.now() }
      socket.messages.push(message)
      socket.onMessage?.(message)
    })
  })
  return socket
}
