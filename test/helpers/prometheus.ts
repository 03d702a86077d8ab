// Reads a Prometheus text exposition (what /metrics answers) into
// `name{labels}` -> value, for the tests that watch metrics move.

export function prometheusSamples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}
