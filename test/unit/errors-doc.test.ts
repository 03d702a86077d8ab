import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { errorTable, README, readmeSection } from '../../scripts/errors-table.ts'
import { errorCodes, TributaryError } from '../../src/errors.ts'

describe('error catalog', () => {
  it('is documented in the README exactly (npm run docs:errors regenerates it)', () => {
    expect(readmeSection(readFileSync(README, 'utf8'))).toBe(errorTable())
  })

  it('builds errors with a stable code, the catalog message and the detail', () => {
    const err = new TributaryError('TRIB_PAYLOAD_TOO_LARGE', '300000 > 262144 bytes')
    expect(err.code).toBe('TRIB_PAYLOAD_TOO_LARGE')
    expect(err.message).toBe(`${errorCodes.TRIB_PAYLOAD_TOO_LARGE.message}: 300000 > 262144 bytes`)
    expect(err.retriable).toBe(false)
  })

  it('uses only TRIB_ codes', () => {
    for (const code of Object.keys(errorCodes)) expect(code).toMatch(/^TRIB_[A-Z0-9_]+$/)
  })
})
