// `tributary start --sink URL`: the quick way to name a sink. The URL becomes
// the same tree a config file's `sinks:` entry gives, so it is validated by the
// same schema. Its name is derived from the address (`kafka-10.0.0.5-9092`),
// so the sink keeps its forwarding cursors across restarts with the same flag;
// `?name=` sets it explicitly. Other query parameters set the sink's options
// (`?exactlyOnce=true&compression=lz4`).

type Tree = { [key: string]: unknown }

const SCHEMES: Record<string, 'kafka' | 'mqtt' | 'http'> = {
  'kafka:': 'kafka',
  'mqtt:': 'mqtt',
  'mqtts:': 'mqtt',
  'http:': 'http',
  'https:': 'http',
}

/** Query values as the schema expects them: booleans and integers, everything else text. */
function typed(value: string): unknown {
  if (value === 'true') return true
  if (value === 'false') return false
  if (/^-?\d+$/.test(value)) return Number(value)
  return value
}

function nameOf(type: string, url: URL): string {
  const path = url.pathname.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '')
  const host = url.hostname.replace(/[^A-Za-z0-9._-]+/g, '-')
  return [type, host, url.port, path]
    .filter((part) => part !== '')
    .join('-')
    .slice(0, 64)
}

/** Parses one --sink URL into a `sinks:` entry; throws an Error with a readable message. */
export function sinkFromUrl(text: string): Tree {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new Error(`"${text}" is not a URL (kafka://HOST:PORT, mqtt://HOST:PORT, http://HOST:PORT/PATH)`)
  }
  const type = SCHEMES[url.protocol]
  if (type === undefined) {
    throw new Error(
      `"${url.protocol}" sinks are not supported; use kafka://, mqtt://, mqtts://, http:// or https://`,
    )
  }
  if (url.hostname === '') throw new Error(`"${text}" has no host`)
  const options: Tree = {}
  for (const [key, value] of url.searchParams) options[key] = typed(value)
  const entry: Tree = { name: nameOf(type, url), type, ...options }
  if (type === 'kafka') {
    if (url.port === '') throw new Error(`"${text}" needs a port (Kafka has no default port in a URL)`)
    entry.brokers = [`${url.hostname}:${url.port}`]
  } else {
    const plain = new URL(url.href)
    plain.search = ''
    entry.url = plain.href
  }
  return entry
}
