// The status page: one self-contained HTML document (inline CSS and JS, no
// framework, no CDN, nothing to build) that the admin server sends at `GET /`
// and `GET /status`. Its script polls /v1/status (every 2 s; `?refreshMs=`
// changes it) and draws the node's figures; ingest rates come from the
// offsets of two successive polls. With a token configured the page is
// opened as `/?token=...`: the script keeps the token for the tab
// (sessionStorage), takes it out of the address bar, and sends it as
// `Authorization: Bearer` with every poll. Everything from the server is set
// as text, never as HTML. A .ts module rather than an .html file so that
// `tsc` carries it into dist/ like the rest of the server.

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tributary status</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --line: #d0d7de; --dim: #57606a; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
  .dim { color: var(--dim); }
  .badge { display: inline-block; padding: 0 .5em; border-radius: 1em; color: #fff; font-weight: 600; }
  .ok { background: var(--ok); } .bad { background: var(--bad); } .warn { background: var(--warn); }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { border-bottom: 1px solid var(--line); padding: .2rem .6rem; text-align: right; white-space: nowrap; }
  th:first-child, td:first-child, td.text, th.text { text-align: left; }
  th { font-weight: 600; background: #f6f8fa; }
  tr.stream td { font-weight: 600; border-top: 2px solid var(--line); }
  dl { display: grid; grid-template-columns: max-content max-content; gap: .1rem 1rem; margin: 0; }
  dt { color: var(--dim); } dd { margin: 0; }
  #error { color: var(--bad); font-weight: 600; }
  td.msg { white-space: normal; text-align: left; max-width: 40rem; }
</style>
</head>
<body>
<h1>tributary <span id="node" class="dim"></span> <span id="ready" class="badge"></span></h1>
<div class="dim">updated <span id="updated">never</span> · uptime <span id="uptime"></span> · MQTT connections <strong id="connections"></strong> · <span id="checks"></span></div>
<div id="error"></div>

<h2>Streams</h2>
<table id="streams"><thead><tr>
  <th>stream / partition</th><th>first offset</th><th>next offset</th><th>records</th><th>bytes</th><th>records/s</th><th class="text">last write</th>
</tr></thead><tbody></tbody></table>

<h2>Disk and wear</h2>
<dl id="disk"></dl>

<h2>Sinks</h2>
<table id="sinks"><thead><tr>
  <th>sink</th><th class="text">stream / partition</th><th class="text">state</th><th>lag records</th><th>lag bytes</th><th>lag seconds</th><th>forwarded</th><th>dead-lettered</th><th>retries</th>
</tr></thead><tbody></tbody></table>

<h2>Peers</h2>
<div id="cluster" class="dim"></div>
<table id="peers"><thead><tr>
  <th class="text">node</th><th class="text">address</th><th class="text">found by</th><th class="text">state</th><th>round trip ms</th><th>copies</th><th>copy lag records</th><th>follows in sync</th>
</tr></thead><tbody></tbody></table>

<h2>Recent errors</h2>
<table id="errors"><thead><tr>
  <th class="text">time</th><th class="text">level</th><th class="text">code</th><th class="text">where</th><th class="text">message</th>
</tr></thead><tbody></tbody></table>

<script>
'use strict'
var params = new URLSearchParams(location.search)
if (params.has('token')) {
  sessionStorage.setItem('tributary-token', params.get('token'))
  params.delete('token')
  var rest = params.toString()
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''))
}
var token = sessionStorage.getItem('tributary-token')
var refreshMs = Math.max(250, Number(params.get('refreshMs')) || 2000)
var previous = new Map() // "stream/partition" -> { next, atMs }

function $(id) { return document.getElementById(id) }
function el(tag, attrs, children) {
  var node = document.createElement(tag)
  for (var k in attrs || {}) node.setAttribute(k, attrs[k])
  ;(children || []).forEach(function (c) {
    node.append(c instanceof Node ? c : c === null || c === undefined ? '' : String(c))
  })
  return node
}
function row(attrs, cells) {
  var tr = el('tr', attrs, [])
  cells.forEach(function (c) { tr.append(c instanceof Node ? c : el('td', {}, [c])) })
  return tr
}
function text(value) { return el('td', { class: 'text' }, [value]) }
function num(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en') }
function bytes(n) {
  if (n === null || n === undefined) return '–'
  var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i]
}
function duration(s) {
  if (s < 120) return Math.round(s) + ' s'
  if (s < 7200) return Math.round(s / 60) + ' min'
  if (s < 172800) return (s / 3600).toFixed(1) + ' h'
  return (s / 86400).toFixed(1) + ' d'
}
function rate(key, next, atMs) {
  var before = previous.get(key)
  previous.set(key, { next: next, atMs: atMs })
  if (!before || atMs <= before.atMs) return null
  return (next - before.next) / ((atMs - before.atMs) / 1000)
}
function fill(tableId, rows) {
  var body = $(tableId).tBodies[0]
  body.replaceChildren.apply(body, rows)
}

function draw(s, atMs) {
  $('node').textContent = s.nodeId
  var ready = $('ready')
  ready.textContent = s.health.ready ? 'ready' : 'not ready'
  ready.className = 'badge ' + (s.health.ready ? 'ok' : 'bad')
  $('checks').textContent = Object.keys(s.health.checks).map(function (k) {
    return k + (s.health.checks[k] ? ' ✓' : ' ✗')
  }).join(' · ')
  $('uptime').textContent = duration(s.uptimeSeconds)
  $('connections').textContent = num(s.mqtt.connections)
  $('updated').textContent = new Date(atMs).toLocaleTimeString('en-GB')

  var rows = []
  if (s.streams.length === 0) rows.push(row({}, [text('no streams yet: nothing has been published')]))
  s.streams.forEach(function (st) {
    var total = 0, known = false, partRows = []
    st.partitions.forEach(function (p) {
      var r = rate(st.name + '/' + p.partition, p.nextOffset, atMs)
      if (r !== null) { total += r; known = true }
      partRows.push(row({ 'data-stream': st.name, 'data-partition': p.partition }, [
        text('  ' + p.partition + (p.origin && p.origin !== s.nodeId ? ' (from ' + p.origin + ')' : '')),
        num(p.firstOffset), num(p.nextOffset), num(p.records), bytes(p.bytes),
        r === null ? '–' : r.toFixed(1), text(p.lastWrite || '–'),
      ]))
    })
    rows.push(row({ class: 'stream', 'data-stream': st.name }, [
      text(st.name), '', '', el('td', { 'data-field': 'records' }, [num(st.records)]), bytes(st.bytes),
      el('td', { 'data-field': 'rate' }, [known ? total.toFixed(1) : '–']), text(''),
    ]))
    rows.push.apply(rows, partRows)
  })
  fill('streams', rows)

  var d = s.disk, disk = $('disk')
  var items = [
    ['used', d.usedPercent === null ? 'unknown' : d.usedPercent.toFixed(1) + ' %' + (d.full ? ' — FULL' : '')],
    ['high-water mark', d.highWaterPercent + ' %'],
    ['stored (log)', bytes(d.storedBytes)],
    ['written since start', d.writtenBytes === null ? 'unknown (no /proc/self/io)' : bytes(d.writtenBytes)],
    ['endurance left', d.enduranceDays === null ? 'not known (set metrics.storageEnduranceTBW)' : num(Math.round(d.enduranceDays)) + ' days at this rate'],
  ]
  disk.replaceChildren.apply(disk, items.flatMap(function (i) {
    return [el('dt', {}, [i[0]]), el('dd', { 'data-field': i[0] }, [i[1]])]
  }))

  fill('sinks', s.sinks.length === 0 ? [row({}, [text('no sinks configured')])] : s.sinks.map(function (k) {
    return row({ 'data-sink': k.sink, 'data-stream': k.stream, 'data-partition': k.partition }, [
      text(k.sink), text(k.stream + ' / ' + k.partition),
      el('td', { class: 'text', 'data-field': 'state' }, [el('span', { class: 'badge ' + (k.state === 'sending' || k.state === 'idle' ? 'ok' : k.state === 'failed' ? 'bad' : 'warn') }, [k.state])]),
      el('td', { 'data-field': 'lagRecords' }, [num(k.lagRecords)]), bytes(k.lagBytes),
      el('td', { 'data-field': 'lagSeconds' }, [k.lagSeconds.toFixed(1)]),
      num(k.forwarded), num(k.deadLettered), num(k.retries),
    ])
  }))

  var peers = s.peers || []
  var conflicts = s.cluster ? (s.cluster.conflicts || []).map(function (c) {
    return '; NODE ID CONFLICT: ' + c.nodeId + ' from ' + c.accepted + ' and ' + c.refused.join(', ')
  }).join('') : ''
  $('cluster').textContent = !s.cluster ? 'this node runs alone (no cluster: configured)'
    : s.cluster.refused ? 'cluster ' + s.cluster.name + ': replication REFUSED: ' + s.cluster.refused
    : 'cluster ' + s.cluster.name + ': ' + s.cluster.partitions.filter(function (c) {
        return c.followers.filter(function (f) { return f.inSync }).length < c.replicas - 1
      }).length + ' of ' + s.cluster.partitions.length + ' partitions short of in-sync followers' + conflicts
  // Per peer: of this node's partitions it was picked to copy, how many it holds in sync.
  var follows = new Map()
  ;(s.cluster ? s.cluster.partitions : []).forEach(function (c) {
    c.followers.forEach(function (f) {
      var n = follows.get(f.follower) || { inSync: 0, assigned: 0 }
      n.assigned++
      if (f.inSync) n.inSync++
      follows.set(f.follower, n)
    })
  })
  fill('peers', peers.length === 0 ? [row({}, [text('no peers')])] : peers.map(function (p) {
    // A copy's lag is null while the link is down: not known, shown as a dash.
    var lag = p.copies.some(function (c) { return c.lagRecords === null }) ? null
      : p.copies.reduce(function (sum, c) { return sum + c.lagRecords }, 0)
    return row({ 'data-peer': p.nodeId || p.address }, [
      text(p.nodeId || '?'), text(p.address), text(p.via),
      el('td', { class: 'text', 'data-field': 'state' }, [el('span', { class: 'badge ' + (p.state === 'connected' ? 'ok' : p.state === 'refused' ? 'bad' : 'warn') }, [p.state])]),
      el('td', {}, [p.rttMs === null ? '–' : p.rttMs.toFixed(1)]), num(p.copies.length), num(lag),
      el('td', { 'data-field': 'inSync' }, [(function (n) { return n ? n.inSync + ' / ' + n.assigned : '0 / 0' })(follows.get(p.nodeId))]),
    ])
  }))

  var errors = (s.recentErrors || []).map(function (e) {
    return { time: e.time, level: e.level, code: e.code, where: e.component, msg: e.msg }
  })
  s.sinks.forEach(function (k) {
    if (k.lastError) errors.push({ time: new Date(k.lastError.atMs).toISOString(), level: 'sink', code: k.lastError.code,
      where: k.sink + ' ' + k.stream + '/' + k.partition, msg: k.lastError.message })
  })
  errors.sort(function (a, b) { return a.time < b.time ? 1 : -1 })
  fill('errors', errors.length === 0 ? [row({}, [text('none')])] : errors.slice(0, 20).map(function (e) {
    return row({ 'data-level': e.level }, [text(e.time), text(e.level), text(e.code || ''), text(e.where || ''), el('td', { class: 'msg' }, [e.msg])])
  }))
}

function poll() {
  var headers = token ? { authorization: 'Bearer ' + token } : {}
  fetch('/v1/status', { headers: headers, cache: 'no-store' })
    .then(function (res) {
      if (res.status === 401) throw new Error('401: open this page as /?token=YOUR_TOKEN')
      if (!res.ok) throw new Error('/v1/status answered ' + res.status)
      return res.json()
    })
    .then(function (s) { $('error').textContent = ''; draw(s, Date.now()) })
    .catch(function (err) { $('error').textContent = 'cannot read /v1/status: ' + err.message })
    .finally(function () { setTimeout(poll, refreshMs) })
}
poll()
</script>
</body>
</html>
`
