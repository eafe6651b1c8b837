// The Player module. The book's player.js (web/static/js/player.js, not
// printed in the channels chapter itself) wraps the YouTube iframe API behind
// three calls that video.js uses:
//
//   Player.init(domId, playerId, onReady)   build the player in #domId, call onReady once
//   Player.getCurrentTime()                 → milliseconds
//   Player.seekTo(millsec)
//
// phx-server must also work with no route to YouTube (tests run offline), so
// init() picks one of three backends and calls onReady in every case:
//
//   "video"   the element has data-src: an HTML5 <video> playing that URL
//   "youtube" data-player-id looks like a YouTube id and the iframe API loads
//             and reports ready within youtubeTimeoutMs: as in the book
//   "clock"   otherwise: a simulated player, a visible clock that advances in
//             real time with play/pause, so annotations scheduled by `at`
//             still appear over time
//
// window.rumblPlayerOptions (optional, read at init) can set
//   {mode: "auto" | "clock" | "youtube" | "video", youtubeTimeoutMs: 3000, autoplay: true}
// "youtube" still falls back to the clock if the API does not come up.
import {formatTime} from "./helpers.js"

const YOUTUBE_ID = /^[A-Za-z0-9_-]{11}$/
const DEFAULTS = {mode: "auto", youtubeTimeoutMs: 3000, autoplay: true}

let Player = {
  player: null,   // the backend's own object: YT.Player, HTMLVideoElement or the clock
  mode: null,     // "youtube" | "video" | "clock", once ready
  backend: null,  // {getCurrentTime() → ms, seekTo(ms)} for the chosen mode

  init(domId, playerId, onReady){
    let opts = Object.assign({}, DEFAULTS, window.rumblPlayerOptions || {})
    let element = document.getElementById(domId)
    let src = element && element.getAttribute("data-src")
    let called = false
    let ready = (event) => {
      if(called){ return }
      called = true
      onReady(event)
    }

    if(src && (opts.mode === "auto" || opts.mode === "video")){
      this.initVideo(element, src, ready)
    } else if(opts.mode !== "clock" && YOUTUBE_ID.test(playerId || "")){
      this.initYouTube(domId, playerId, opts, ready, () => {
        this.initClock(document.getElementById(domId), playerId, opts, ready)
      })
    } else {
      this.initClock(element, playerId, opts, ready)
    }
  },

  // --- YouTube, as the book does it, with a deadline ----------------------

  initYouTube(domId, playerId, opts, onReady, fallback){
    let original = document.getElementById(domId)
    let settled = false
    let timer = null

    let giveUp = (why) => {
      if(settled){ return }
      settled = true
      clearTimeout(timer)
      // YT.Player replaces the element with an <iframe> of the same id; put
      // the original back so the clock has its container (and data-*).
      let current = document.getElementById(domId)
      if(original && current && current !== original){ current.replaceWith(original) }
      console.log(`player: YouTube unavailable (${why}); using the offline clock player`)
      fallback()
    }

    let create = () => {
      if(settled){ return }
      try {
        let ytPlayer = new window.YT.Player(domId, {
          height: "360",
          width: "420",
          videoId: playerId,
          events: {
            "onReady": (event => {
              if(settled){ return }
              settled = true
              clearTimeout(timer)
              this.player = ytPlayer
              this.mode = "youtube"
              this.backend = {
                getCurrentTime: () => Math.floor(ytPlayer.getCurrentTime() * 1000),
                seekTo: (millsec) => ytPlayer.seekTo(millsec / 1000)
              }
              onReady(event)
            }),
            "onStateChange": (event => this.onPlayerStateChange(event) )
          }
        })
      } catch(e) {
        giveUp(e && e.message || "YT.Player failed")
      }
    }

    // The deadline covers the whole way to the player's onReady: the API
    // script, the widget script it loads, and the iframe.
    timer = setTimeout(() => giveUp("timed out"), opts.youtubeTimeoutMs)

    if(window.YT && window.YT.Player){
      create()
    } else {
      let previous = window.onYouTubeIframeAPIReady
      window.onYouTubeIframeAPIReady = () => {
        if(typeof previous === "function"){ previous() }
        create()
      }
      let youtubeScriptTag = document.createElement("script")
      youtubeScriptTag.src = "https://www.youtube.com/iframe_api"
      youtubeScriptTag.async = true
      youtubeScriptTag.onerror = () => giveUp("iframe API script failed to load")
      document.head.appendChild(youtubeScriptTag)
    }
  },

  onPlayerStateChange(event){ },

  // --- HTML5 <video> for data-src --------------------------------------------

  initVideo(element, src, onReady){
    let video = document.createElement("video")
    video.className = "html5-player"
    video.controls = true
    video.preload = "metadata"
    video.playsInline = true
    video.src = src
    element.innerHTML = ""
    element.appendChild(video)
    this.player = video
    this.mode = "video"
    this.backend = {
      getCurrentTime: () => Math.floor(video.currentTime * 1000),
      seekTo: (millsec) => { video.currentTime = millsec / 1000 }
    }
    // Ready at once: currentTime works before (or without) any media data,
    // and offline the media may never load.
    onReady()
  },

  // --- the offline clock -------------------------------------------------------

  initClock(element, playerId, opts, onReady){
    let clock = createClock(element, playerId, opts.autoplay)
    this.player = clock
    this.mode = "clock"
    this.backend = clock
    onReady()
  },

  // --- the book's interface ------------------------------------------------

  getCurrentTime(){
    return this.backend ? this.backend.getCurrentTime() : 0
  },

  seekTo(millsec){
    let ms = Number(millsec)
    if(!this.backend || !isFinite(ms)){ return }
    return this.backend.seekTo(ms)
  }
}

// A player with no media: a clock from 0 that runs in real time.
// Shown inside `element` (its data-* attributes stay as they are):
//   .sim-player[data-state=playing|paused][data-ms=<current ms>]
//     .sim-time "mm:ss", button.sim-toggle (Play/Pause), .sim-back / .sim-fwd (±10 s)
function createClock(element, playerId, autoplay){
  let now = () => (typeof performance !== "undefined" && performance.now) ? performance.now() : Date.now()
  let offset = 0          // ms on the clock when it was last paused or seeked
  let startedAt = null    // now() when it was last started; null while paused

  let root = document.createElement("div")
  root.className = "sim-player"
  root.innerHTML = `
    <div class="sim-screen">
      <div class="sim-label">Offline player</div>
      <div class="sim-time" aria-live="off">00:00</div>
      <div class="sim-source"></div>
    </div>
    <div class="sim-controls">
      <button type="button" class="sim-back" title="Back 10 seconds">&minus;10s</button>
      <button type="button" class="sim-toggle">Play</button>
      <button type="button" class="sim-fwd" title="Forward 10 seconds">+10s</button>
    </div>`
  root.querySelector(".sim-source").textContent =
    playerId ? `video ${playerId} (YouTube not reachable)` : "no video source"
  let timeEl = root.querySelector(".sim-time")
  let toggle = root.querySelector(".sim-toggle")

  let clock = {
    getCurrentTime(){
      let ms = offset + (startedAt === null ? 0 : now() - startedAt)
      return Math.floor(ms)
    },
    seekTo(millsec){
      offset = Math.max(0, Number(millsec))
      if(startedAt !== null){ startedAt = now() }
      render()
    },
    play(){
      if(startedAt === null){ startedAt = now() }
      render()
    },
    pause(){
      if(startedAt !== null){ offset = clock.getCurrentTime(); startedAt = null }
      render()
    },
    isPlaying(){ return startedAt !== null }
  }

  function render(){
    let ms = clock.getCurrentTime()
    timeEl.textContent = formatTime(ms)
    root.setAttribute("data-ms", String(ms))
    root.setAttribute("data-state", clock.isPlaying() ? "playing" : "paused")
    toggle.textContent = clock.isPlaying() ? "Pause" : "Play"
  }

  toggle.addEventListener("click", () => clock.isPlaying() ? clock.pause() : clock.play())
  root.querySelector(".sim-back").addEventListener("click", () => clock.seekTo(clock.getCurrentTime() - 10000))
  root.querySelector(".sim-fwd").addEventListener("click", () => clock.seekTo(clock.getCurrentTime() + 10000))

  element.innerHTML = ""
  element.appendChild(root)
  if(autoplay){ clock.play() } else { render() }
  setInterval(render, 250)
  return clock
}

export default Player
