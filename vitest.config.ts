import { defineConfig } from 'vitest/config'

// One project per tier of ../shared/TESTING.md. Integration and crash tests
// start real processes and sockets, so they run one file at a time on the
// project's two-core CI machines. `upstream` runs against a real Kafka broker
// that its global setup starts once and stops at the end (test/helpers/kafka.ts).
// `cluster` builds LANs of network namespaces (test/helpers/netns.ts), so it
// needs root, as CI has; without root its tests fail and say so.
export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'conformance', include: ['test/conformance/**/*.test.ts'] } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'crash',
          include: ['test/crash/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'upstream',
          include: ['test/upstream/**/*.test.ts'],
          globalSetup: ['test/upstream/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
