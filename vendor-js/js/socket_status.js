// The watch page's status line (#socket-status): connecting, connected, or
// refused with the reason, instead of a page that silently shows no
// annotations. A browser tells a page nothing about why a WebSocket upgrade
// failed (a 403 is just an "error" event), so the server renders the one
// refusal it can predict into data-refusal: its check_origin would refuse
// this page's own origin. Not from the book; the book's page has no status.

// The line for a state; pure, so `npm test` can check it under Node.
//   state    "connecting" | "connected" | "reconnecting" | "failed" | "join-error"
//   refusal  the server's data-refusal text ("" when the origin is allowed)
//   detail   the failed attempts so far, or the join's error reason
export function statusText(state, refusal, detail){
  switch(state){
    case "connected": return "Socket: connected"
    case "reconnecting": return "Socket: disconnected, reconnecting…"
    case "failed":
      if(refusal){ return "Socket: refused — " + refusal }
      return "Socket: cannot connect (" + detail + " attempt" + (detail === 1 ? "" : "s") +
        "), retrying… The server's log says why it refused."
    case "join-error": return "Socket: connected, but joining the video was refused: " + detail
    default: return "Socket: connecting…"
  }
}

// Wires the line to `socket` (a phoenix Socket). Returns a function that
// reports a channel join error on the same line.
export default function watchSocketStatus(socket, element){
  if(!element){ return () => {} }
  let refusal = element.getAttribute("data-refusal") || ""
  let failures = 0
  let show = (state, detail) => {
    element.setAttribute("data-state", state === "failed" && refusal ? "refused" : state)
    element.textContent = statusText(state, refusal, detail)
  }
  socket.onOpen(() => { failures = 0; show("connected") })
  socket.onError(() => { failures += 1; show("failed", failures) })
  socket.onClose(() => {
    if(element.getAttribute("data-state") === "connected"){ show("reconnecting") }
  })
  return (reason) => show("join-error", reason && reason.reason ? reason.reason : JSON.stringify(reason))
}
