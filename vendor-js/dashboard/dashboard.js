// The phx-server dashboard page (served at /dashboard on the admin listener). It joins
// `dashboard:stats` on the server's own Phoenix socket with the official `phoenix` client, and
// charts every node's one-second snapshots with uPlot.
//
// The token comes from the form or `?token=`, is kept in sessionStorage (this tab only) and is
// taken out of the address bar at once, so it is not left in history or a copied link.
import {Socket} from "phoenix"
import uPlot from "uplot"
import "uplot/dist/uPlot.min.css"
import "./dashboard.css"

const TOKEN_KEY = "phx-dashboard-token"
// Samples kept per node: two minutes at one a second.
const KEEP = 120
// A node not heard from for this long has left the cluster (or lost Redis): it is dropped.
const GONE_MS = 30000

const root = document.getElementById("dashboard")
const statusEl = document.getElementById("status")
const form = document.getElementById("token-form")

/** The charts: a title, a unit, and per node the series (label suffix, value of a snapshot). */
const CHARTS = [
  {id: "sockets", title: "Sockets", unit: "", series: [
    ["websocket", (s) => s.sockets.websocket],
    ["longpoll", (s) => s.sockets.longpoll]]},
  {id: "messages", title: "Messages / s", unit: "/s", series: [
    ["in", (s) => s.messages_in_per_sec],
    ["out", (s) => s.messages_out_per_sec]]},
  {id: "latency", title: "Fan-out latency, broadcast → write (mean)", unit: "ms", series: [
    ["", (s) => s.fanout_latency_ms]]},
  {id: "presence", title: "Presence entries", unit: "", series: [
    ["", (s) => s.presence_entries]]},
  {id: "slow", title: "Slow-consumer closes (total)", unit: "", series: [
    ["", (s) => s.slow_consumer_closes]]},
  {id: "rss", title: "RSS", unit: "MiB", series: [
    ["", (s) => (s.rss_bytes == null ? null : s.rss_bytes / 1048576)]]},
]

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"]

/** node name → its snapshots, oldest first. */
const samples = new Map()
/** node name → when (this page's clock) its last snapshot arrived. */
const lastSeen = new Map()
/** chart id → {plot, key} (key: the series layout it was built for). */
const charts = {}

function setStatus(state, text){
  statusEl.textContent = text
  statusEl.dataset.state = state
  root.dataset.state = state
}

function takeToken(){
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get("token")
  if(fromUrl){
    sessionStorage.setItem(TOKEN_KEY, fromUrl)
    url.searchParams.delete("token")
    window.history.replaceState(null, "", url.pathname + url.search + url.hash)
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

form.addEventListener("submit", (e) => {
  e.preventDefault()
  const t = form.elements.token.value
  if(!t) return
  sessionStorage.setItem(TOKEN_KEY, t)
  form.elements.token.value = ""
  connect(t)
})

function chartBox(def){
  let box = document.getElementById(`chart-${def.id}`)
  if(!box){
    box = document.createElement("figure")
    box.id = `chart-${def.id}`
    box.className = "chart"
    const cap = document.createElement("figcaption")
    cap.textContent = def.title
    box.appendChild(cap)
    document.getElementById("charts").appendChild(box)
  }
  return box
}

/**
 * uPlot's aligned data for `def`: [x (s), ...one array per node and series]. Nodes tick at
 * their own instants, so x is the union of every node's snapshot times and each node's series
 * is null at the others' (uPlot draws across those gaps).
 */
function chartData(def, nodes){
  const xs = new Set()
  for(const n of nodes) for(const s of samples.get(n)) xs.add(s.at_ms / 1000)
  const x = [...xs].sort((a, b) => a - b)
  const at = new Map(x.map((t, i) => [t, i]))
  const data = [x]
  for(const n of nodes){
    for(const [, value] of def.series){
      const col = new Array(x.length).fill(null)
      for(const s of samples.get(n)){
        const v = value(s)
        col[at.get(s.at_ms / 1000)] = v == null ? null : v
      }
      data.push(col)
    }
  }
  return data
}

function renderChart(def, nodes){
  const box = chartBox(def)
  const key = nodes.join("\u0000")
  const data = chartData(def, nodes)
  const existing = charts[def.id]
  if(existing && existing.key === key){
    existing.plot.setData(data)
  } else {
    if(existing) existing.plot.destroy()
    const series = [{}]
    let i = 0
    for(const n of nodes){
      for(const [suffix] of def.series){
        const color = PALETTE[i++ % PALETTE.length]
        series.push({
          label: suffix ? `${n} ${suffix}` : n,
          stroke: color,
          width: 2,
          spanGaps: true,
          value: (u, v) => (v == null ? "–" : `${+v.toFixed(2)}${def.unit ? " " + def.unit : ""}`),
        })
      }
    }
    const width = Math.max(280, Math.min(560, box.clientWidth || 520))
    const plot = new uPlot({width, height: 180, series, axes: [{}, {size: 60}], scales: {x: {time: true}}}, data, box)
    charts[def.id] = {plot, key}
  }
  box.dataset.points = String(data[0].length)
}

function renderNodes(nodes){
  const rows = nodes.map((n) => {
    const s = samples.get(n)[samples.get(n).length - 1]
    const channels = s.channels
      .map((c) => `<li><code>${esc(c.socket)}</code> <code>${esc(c.pattern)}</code>: <b>${c.joined}</b></li>`)
      .join("")
    return `<tr data-node="${esc(n)}"><th>${esc(n)}</th>
      <td>${s.sockets.websocket} ws · ${s.sockets.longpoll} lp</td>
      <td>${s.messages_in_per_sec.toFixed(1)} in · ${s.messages_out_per_sec.toFixed(1)} out</td>
      <td>${s.fanout_latency_ms == null ? "–" : s.fanout_latency_ms.toFixed(2) + " ms"}</td>
      <td>${s.slow_consumer_closes}</td><td>${s.presence_entries}</td>
      <td>${s.rss_bytes == null ? "–" : (s.rss_bytes / 1048576).toFixed(1) + " MiB"}</td>
      <td><ul class="channels">${channels}</ul></td></tr>`
  })
  document.getElementById("nodes").innerHTML = `<table><thead><tr><th>node</th><th>sockets</th>
    <th>messages/s</th><th>fan-out latency</th><th>slow-consumer closes</th><th>presence</th>
    <th>RSS</th><th>channels by topic pattern</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
}

function esc(s){
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c])
}

function onSnapshot(s){
  if(!s || typeof s.node !== "string") return
  if(!samples.has(s.node)) samples.set(s.node, [])
  const list = samples.get(s.node)
  list.push(s)
  if(list.length > KEEP) list.splice(0, list.length - KEEP)
  const now = Date.now()
  lastSeen.set(s.node, now)
  for(const [n, t] of lastSeen){
    if(now - t > GONE_MS){ lastSeen.delete(n); samples.delete(n) }
  }
  const nodes = [...samples.keys()].sort()
  for(const def of CHARTS) renderChart(def, nodes)
  renderNodes(nodes)
  root.dataset.snapshots = String(Number(root.dataset.snapshots || 0) + 1)
  setStatus("live", `Live: ${nodes.length} node${nodes.length === 1 ? "" : "s"} (${nodes.join(", ")}).`)
}

let socket = null

function connect(token){
  if(socket) socket.disconnect()
  let opened = false
  setStatus("connecting", "Connecting…")
  // authToken, not params: the token travels in the Sec-WebSocket-Protocol header, not in
  // the URL that proxies and tunnels log.
  socket = new Socket(root.dataset.socket, {authToken: token})
  socket.onOpen(() => { opened = true })
  socket.onError(() => {
    if(!opened){
      // The browser hides the upgrade's status; a socket that never opened was refused (a wrong
      // ADMIN_TOKEN) or the listener is down. Stop retrying a token that does not work.
      setStatus("refused", "The dashboard socket refused the connection: the token is not ADMIN_TOKEN (or the admin listener is down). Enter the token again.")
      sessionStorage.removeItem(TOKEN_KEY)
      socket.disconnect()
    } else {
      setStatus("reconnecting", "Disconnected; reconnecting…")
    }
  })
  const channel = socket.channel(root.dataset.topic, {})
  channel.on(root.dataset.event, onSnapshot)
  channel.join()
    .receive("ok", () => setStatus("joined", "Joined; waiting for the first snapshot…"))
    .receive("error", () => setStatus("refused", "The dashboard channel refused the join."))
  socket.connect()
  window.__dashboard.socket = socket
}

window.__dashboard = {charts, samples, socket: null}

const token = takeToken()
if(token) connect(token)
else setStatus("no-token", "Enter ADMIN_TOKEN to open the dashboard.")
