// The Video module: the final version from the channels chapter of
// "Programming Phoenix" (web/static/js/video.js), with the last_seen_id
// tracking from "Handling Disconnects" and the viewer list from "Tracking
// Presence". Adaptations, each marked below: join params via mutableParams()
// (phoenix.js >= 1.3 keeps params in a closure), esc() also escaping quotes,
// and the viewer list escaping usernames.
import {Presence} from "phoenix"
import Player from "./player.js"
import {formatTime, escapeHtml, escapeQuotes, mutableParams} from "./helpers.js"
import watchSocketStatus from "./socket_status.js"

let Video = {

  init(socket, element){ if(!element){ return }
    let playerId = element.getAttribute("data-player-id")
    let videoId = element.getAttribute("data-id")
    // Added: the page says whether its socket is up (see socket_status.js).
    this.joinError = watchSocketStatus(socket, document.getElementById("socket-status"))
    socket.connect()
    Player.init(element.id, playerId, () => {
      this.onReady(videoId, socket)
    })
  },

  onReady(videoId, socket){
    let msgContainer = document.getElementById("msg-container")
    let msgInput = document.getElementById("msg-input")
    let postButton = document.getElementById("msg-submit")
    let userList = document.getElementById("presence-list")
    // Adapted: the params are a function phoenix.js calls on every (re)join,
    // carrying whatever last_seen_id was set on vidChannel.params below.
    let vidChannel = socket.channel("videos:" + videoId, mutableParams())

    // Who is watching: the server pushes presence_state after the join and
    // presence_diff as viewers come and go; Presence keeps the list in sync.
    let presence = new Presence(vidChannel)

    presence.onSync(() => {
      if(!userList){ return }
      userList.innerHTML = presence.list((id, entry) =>
        this.renderUser(id, entry)
      ).join("")
    })

    // Post: push new_annotation at the player's current time, clear the box.
    postButton.addEventListener("click", e => {
      let payload = {body: msgInput.value, at: Player.getCurrentTime()}
      vidChannel.push("new_annotation", payload)
        .receive("error", e => console.log(e) )
      msgInput.value = ""
    })

    // Clicking an annotation (the <a> or the <b> inside it) seeks the player.
    msgContainer.addEventListener("click", e => {
      e.preventDefault()
      let seconds = e.target.getAttribute("data-seek") ||
                    e.target.parentNode.getAttribute("data-seek")
      if(!seconds){ return }

      Player.seekTo(seconds)
    })

    // Broadcasts are shown at once and remembered, so a rejoin after a
    // disconnect asks only for what came later.
    vidChannel.on("new_annotation", (resp) => {
      vidChannel.params.last_seen_id = resp.id
      this.renderAnnotation(msgContainer, resp)
    })

    vidChannel.join()
      .receive("ok", resp => {
        let ids = resp.annotations.map(ann => ann.id)
        if(ids.length > 0){ vidChannel.params.last_seen_id = Math.max(...ids) }
        this.scheduleMessages(msgContainer, resp.annotations)
      })
      .receive("error", reason => {
        console.log("join failed", reason)
        if(this.joinError){ this.joinError(reason) }
      })
  },

  // User input goes through a text node, so markup in it is shown as text.
  // Adapted: quotes are escaped as well, since the result also lands inside
  // the data-seek attribute. Without a DOM (Node tests) the pure
  // escapeHtml() gives the same string.
  esc(str){
    if(typeof document === "undefined"){ return escapeHtml(str) }
    let div = document.createElement("div")
    div.appendChild(document.createTextNode(str))
    return escapeQuotes(div.innerHTML)
  },

  // One viewer: the username (from the server's Presence fetch) and how many
  // tabs or devices they watch from. Adapted: the book interpolates
  // user.username as is; here it goes through esc(), and a missing user
  // shows the viewer's id.
  renderUser(id, {user: user, metas: [first, ...rest]}){
    let count = rest.length + 1
    let username = user && user.username ? user.username : "user " + id
    return `<li data-user-id="${this.esc(id)}">${this.esc(username)}: (${count})</li>`
  },

  // (user can be null when the server's render_one met a deleted user; the
  // book's code would throw there and stop the schedule loop, so fall back
  // to the book's own placeholder name.)
  renderAnnotation(msgContainer, {user, body, at}){
    let username = user ? user.username : "anon"
    let template = document.createElement("div")
    template.innerHTML = `
    <a href="#" data-seek="${this.esc(at)}">
      [${this.formatTime(at)}]
      <b>${this.esc(username)}</b>: ${this.esc(body)}
    </a>
    `
    msgContainer.appendChild(template)
    msgContainer.scrollTop = msgContainer.scrollHeight
  },

  // Every second, render the annotations whose time has come and keep the
  // rest for the next tick.
  scheduleMessages(msgContainer, annotations){
    setTimeout(() => {
      let ctime = Player.getCurrentTime()
      let remaining = this.renderAtTime(annotations, ctime, msgContainer)
      this.scheduleMessages(msgContainer, remaining)
    }, 1000)
  },

  // `seconds` is the player's time as getCurrentTime() returns it, which is
  // milliseconds, the same unit as `at` (the book's name is kept).
  renderAtTime(annotations, seconds, msgContainer){
    return annotations.filter( ann => {
      if(ann.at > seconds){
        return true
      } else {
        this.renderAnnotation(msgContainer, ann)
        return false
      }
    })
  },

  formatTime(at){ return formatTime(at) }
}

export default Video
