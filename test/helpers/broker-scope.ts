// One child broker and one temp dir per test, cleaned up after each test
// even when it fails: the child is SIGKILLed by its pid, the dir removed.

import { afterEach } from 'vitest'
import { type ChildBroker, type SpawnOptions, spawnBroker } from './child.ts'
import { tempDir } from './temp-dir.ts'

export interface BrokerScope {
  /** A fresh temp dir for this test. */
  dir(): Promise<string>
  /** Starts a broker (stopping none: call stop() or kill() first to restart). */
  start(dataDir: string, options?: SpawnOptions): Promise<ChildBroker>
  /** Sends `signal` to the running broker and forgets it; resolves with its exit. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined>
}

export function brokerScope(): BrokerScope {
  let broker: ChildBroker | null = null
  const dirs: Array<() => Promise<void>> = []

  afterEach(async () => {
    if (broker !== null) await broker.kill('SIGKILL')
    broker = null
    for (const remove of dirs.splice(0)) await remove()
  })

  return {
    async dir() {
      const made = await tempDir()
      dirs.push(made.remove)
      return made.path
    },
    async start(dataDir, options) {
      broker = await spawnBroker(dataDir, options)
      return broker
    },
    async kill(signal) {
      const exit = await broker?.kill(signal)
      broker = null
      return exit
    },
  }
}
