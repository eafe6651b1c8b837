// The book's app.js (web/static/js/app.js) without `import "phoenix_html"`:
// that package comes from Phoenix's own build (Hex deps), and nothing on the
// watch page uses it.
import socket from "./socket.js"
import Video from "./video.js"
import Player from "./player.js"

// For browser tests: the live socket and player (socket.channels lists the
// joined channels, Player.mode tells which player backend is in use).
window.__rumbl = {socket, Player, Video}

Video.init(socket, document.getElementById("video"))
