// The book's socket.js (web/static/js/socket.js, the "Socket Authentication"
// version): one Socket on /socket carrying the user's token, with the book's
// console logger. Additions for phx-server's pages and tests:
//   - window.userToken may be absent or empty: then no token param is sent
//     (the server refuses the connection, as UserSocket.connect does).
//   - window.phxSocketOptions, if set before this bundle runs, is merged over
//     the options below (e.g. {longPollFallbackMs: 2500}, {logger: null},
//     {transport: "longpoll"}). `transport` may be the phoenix class itself or
//     one of the strings "longpoll" / "websocket".
import {Socket, LongPoll} from "phoenix"

let params = window.userToken ? {token: window.userToken} : {}

let options = Object.assign({
  // :params arrive as the first argument of UserSocket.connect
  params: params,
  logger: (kind, msg, data) => { console.log(`${kind}: ${msg}`, data) }
}, window.phxSocketOptions || {})

if(options.transport === "longpoll"){ options.transport = LongPoll }
if(options.transport === "websocket"){ options.transport = window.WebSocket }

let socket = new Socket("/socket", options)

export default socket
