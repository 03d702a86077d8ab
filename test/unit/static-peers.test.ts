import { describe, expect, it } from 'vitest'
import type { FoundPeer } from '../../src/cluster/discovery.ts'
import { parsePeer, StaticPeers } from '../../src/cluster/static-peers.ts'
import { isTributaryError } from '../../src/errors.ts'

describe('parsePeer', () => {
  it.each([
    ['node-2.local:7625', { host: 'node-2.local', port: 7625 }],
    ['10.0.0.7:1', { host: '10.0.0.7', port: 1 }],
    ['gateway:65535', { host: 'gateway', port: 65535 }],
    ['[::1]:7625', { host: '::1', port: 7625 }],
    ['[fd00::7]:7625', { host: 'fd00::7', port: 7625 }],
  ])('reads %s', (text, expected) => {
    expect(parsePeer(text)).toEqual(expected)
  })

  it.each([
    ['node-2.local', 'needs a port'],
    ['node-2.local:', 'port from 1 to 65535'],
    ['node-2.local:0', 'port from 1 to 65535'],
    ['node-2.local:65536', 'port from 1 to 65535'],
    ['node-2.local:76x', 'port from 1 to 65535'],
    ['node-2.local:+76', 'port from 1 to 65535'],
    [':7625', 'host name or IPv4 address'],
    ['bad host:7625', 'host name or IPv4 address'],
    ['a..b:7625', 'host name or IPv4 address'],
    ['::1:7625', 'in brackets'],
    ['[::1:7625', 'never closes'],
    ['[::1]7625', 'needs :port after the ]'],
    ['[not-v6]:7625', 'no valid IPv6 address'],
  ])('refuses %s with TRIB_CONFIG_INVALID saying what is wrong', (text, why) => {
    let caught: unknown
    try {
      parsePeer(text)
    } catch (err) {
      caught = err
    }
    expect(isTributaryError(caught, 'TRIB_CONFIG_INVALID')).toBe(true)
    expect((caught as Error).message).toContain(JSON.stringify(text))
    expect((caught as Error).message).toContain(why)
  })
})

describe('StaticPeers', () => {
  it('finds each configured address once at start, without a node id, and nothing after close', async () => {
    const discovery = new StaticPeers({
      cluster: 'barn',
      peers: ['10.0.0.2:7625', '[fd00::3]:7625', '10.0.0.2:7625'],
    })
    const found: FoundPeer[] = []
    discovery.on('found', (peer) => found.push(peer))
    expect(discovery.peers()).toEqual([])
    await discovery.start()
    await discovery.start()
    const expected: FoundPeer[] = [
      { cluster: 'barn', nodeId: null, host: '10.0.0.2', port: 7625, protocol: null, via: 'static' },
      { cluster: 'barn', nodeId: null, host: 'fd00::3', port: 7625, protocol: null, via: 'static' },
    ]
    expect(found).toEqual(expected)
    expect(discovery.peers()).toEqual(expected)
    await discovery.close()
    await discovery.close()
  })

  it('fails at construction on a bad entry', () => {
    expect(() => new StaticPeers({ cluster: 'barn', peers: ['10.0.0.2'] })).toThrow(/cluster\.peers/)
  })
})
