// Publish a MediaStream with WHIP as one session (the teacher's screen share, a classroom's camera): offer,
// wait until ICE/DTLS is up, and end it with DELETE. Retrying is the caller's choice.
import { newPeerConnection, negotiate, deleteSession, preferCodec, endpointUrl, i18nError } from "./whip-client.js";
import { msg } from "./i18n.js";

const CONNECT_TIMEOUT_MS = 15000;

export function waitConnected(pc, timeoutMs = CONNECT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected") finish(null);
      else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        finish(i18nError(msg("common.err.ice_failed")));
      }
    };
    const finish = (err) => {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      err ? reject(err) : resolve();
    };
    const timer = setTimeout(() => finish(i18nError(msg("common.err.connect_timeout"))), timeoutMs);
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}

/**
 * @param {MediaStream} stream
 * @param {{room: string, token: string, query?: Record<string,string>, video?: RTCRtpEncodingParameters}} o
 * @returns {Promise<{pc: RTCPeerConnection, resource: string, stop: (o?: {skipDelete?: boolean, keepalive?: boolean}) => Promise<void>}>}
 */
export async function publishStream(stream, { room, token, query = {}, video = null }) {
  const pc = newPeerConnection();
  for (const track of stream.getAudioTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  for (const track of stream.getVideoTracks()) {
    const init = { direction: "sendonly", streams: [stream] };
    if (video) init.sendEncodings = [video];
    let t;
    try {
      t = pc.addTransceiver(track, init);
    } catch (e) {  // a browser without this scalability mode: send plain frames
      if (!video || !video.scalabilityMode) throw e;
      const { scalabilityMode, ...plain } = video;
      t = pc.addTransceiver(track, { ...init, sendEncodings: [plain] });
    }
    preferCodec(t, "video", "video/VP8");
  }
  let resource = null;
  const session = {
    pc,
    resource: null,
    stopped: false,
    async stop({ skipDelete = false, keepalive = false } = {}) {
      if (session.stopped) return;
      session.stopped = true;
      // DELETE before closing, or the server ends the session on its own and the DELETE finds nothing
      if (session.resource && !skipDelete) await deleteSession(session.resource, token, { keepalive });
      try { pc.close(); } catch { /* closed */ }
    },
  };
  try {
    const qs = new URLSearchParams(query).toString();
    resource = await negotiate(pc, endpointUrl("whip", room) + (qs ? `?${qs}` : ""), token);
    session.resource = resource;
    await waitConnected(pc);
  } catch (e) {
    await session.stop();
    throw e;
  }
  return session;
}
