// A browser peer that speaks Hearth's signaling contract and call sub-protocol
// (docs/protocol.md) with the browser's own RTCPeerConnection. The interop test drives it
// through window.hearth.

const state = document.getElementById('state');
const log = (s) => { state.textContent = s; };

let ws;
let me;
let iceServers = [];
let prefer = null; // 'H264' | 'VP8' | null (browser default)
let autoAnswer = false;
let size = { width: 640, height: 480 };
// For the benchmark: when this side answered, and when the first remote frame was decoded.
const timing = { answeredAt: null, firstFrameAt: null };
const calls = new Map(); // peer id -> { id, pc, queued: [] }
const events = [];

function send(to, data) {
  ws.send(JSON.stringify({ type: 'signal', to, data }));
}

function orderCodecs(transceiver) {
  if (!prefer || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities('video').codecs;
  const want = (c) => c.mimeType.toUpperCase() === `VIDEO/${prefer}` &&
    (prefer !== 'H264' || (/packetization-mode=1/.test(c.sdpFmtpLine || '') && /profile-level-id=42e01f/.test(c.sdpFmtpLine || '')));
  const first = caps.filter(want);
  transceiver.setCodecPreferences([...first, ...caps.filter((c) => !want(c))]);
}

async function newCall(peer, id) {
  const pc = new RTCPeerConnection({ iceServers });
  const call = { id, pc, queued: [] };
  calls.set(peer, call);
  pc.onicecandidate = (e) => send(peer, { call: 'candidate', id, candidate: e.candidate ? e.candidate.toJSON() : null });
  pc.ontrack = (e) => { document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => events.push({ peer, state: pc.connectionState });
  const media = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { exact: size.width }, height: { exact: size.height }, frameRate: 30 },
  });
  for (const track of media.getTracks()) {
    const sender = pc.addTrack(track, media);
    // Keep the asked-for size rather than trading it for CPU, so a benchmark compares like
    // with like.
    if (track.kind === 'video' && size.keep) {
      track.contentHint = 'detail';
      const params = sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      await sender.setParameters(params).catch(() => {});
    }
  }
  for (const t of pc.getTransceivers()) if (t.receiver.track.kind === 'video') orderCodecs(t);
  return call;
}

async function onCall(from, msg) {
  let call = calls.get(from);
  switch (msg.call) {
    case 'invite': {
      call = await newCall(from, msg.id);
      await call.pc.setRemoteDescription(msg.sdp);
      for (const t of call.pc.getTransceivers()) if (t.receiver.track.kind === 'video') orderCodecs(t);
      send(from, { call: 'ringing', id: msg.id });
      events.push({ peer: from, incoming: true });
      if (autoAnswer) await answer(from);
      break;
    }
    case 'answer':
      if (call && call.id === msg.id) await call.pc.setRemoteDescription(msg.sdp);
      for (const c of call ? call.queued.splice(0) : []) await call.pc.addIceCandidate(c);
      break;
    case 'candidate':
      if (!call || call.id !== msg.id || !msg.candidate) break;
      if (call.pc.remoteDescription) await call.pc.addIceCandidate(msg.candidate);
      else call.queued.push(msg.candidate);
      break;
    case 'renegotiate':
      if (!call || call.id !== msg.id) break;
      await call.pc.setRemoteDescription(msg.sdp);
      if (msg.sdp.type === 'offer') {
        await call.pc.setLocalDescription(await call.pc.createAnswer());
        send(from, { call: 'renegotiate', id: msg.id, sdp: call.pc.localDescription.toJSON() });
      }
      break;
    case 'hangup':
    case 'decline':
      if (call) { call.pc.close(); calls.delete(from); }
      events.push({ peer: from, ended: msg.call });
      break;
    default:
      break;
  }
}

async function answer(peer) {
  const call = calls.get(peer);
  timing.answeredAt = performance.now();
  const poll = setInterval(async () => {
    const report = await call.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0 && timing.firstFrameAt === null) {
        timing.firstFrameAt = performance.now();
      }
    });
    if (timing.firstFrameAt !== null) clearInterval(poll);
  }, 10);
  await call.pc.setLocalDescription(await call.pc.createAnswer());
  send(peer, { call: 'answer', id: call.id, sdp: call.pc.localDescription.toJSON() });
  for (const c of call.queued.splice(0)) await call.pc.addIceCandidate(c);
}

window.hearth = {
  events,
  timing,
  connect(url, token, options = {}) {
    prefer = options.prefer || null;
    autoAnswer = !!options.autoAnswer;
    if (options.width) size = { width: options.width, height: options.height, keep: !!options.keepSize };
    return new Promise((resolve, reject) => {
      ws = new WebSocket(url);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token }));
      ws.onmessage = async (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === 'welcome') {
          me = msg.peer;
          iceServers = (msg.ice_servers || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
          log(`joined as ${me}`);
          resolve({ me, peers: msg.peers });
        } else if (msg.type === 'error') {
          reject(new Error(`${msg.code}: ${msg.message}`));
        } else if (msg.type === 'signal' && msg.data && msg.data.call) {
          try { await onCall(msg.from, msg.data); } catch (err) { events.push({ error: String(err) }); }
        } else if (msg.type === 'peer_joined') {
          events.push({ joined: msg.peer, name: msg.name });
        }
      };
      ws.onerror = () => reject(new Error('websocket error'));
    });
  },
  async call(peer) {
    const id = `b-${Math.random().toString(16).slice(2)}`;
    const call = await newCall(peer, id);
    await call.pc.setLocalDescription(await call.pc.createOffer());
    send(peer, { call: 'invite', id, sdp: call.pc.localDescription.toJSON(), members: [] });
  },
  hangup(peer) {
    const call = calls.get(peer);
    if (!call) return;
    send(peer, { call: 'hangup', id: call.id, reason: 'ended' });
    call.pc.close();
    calls.delete(peer);
  },
  // Ends the session (docs/protocol.md, *Sessions*): without it the server holds a closed
  // page's place for the resume grace and the others still see it in the room.
  leave() {
    for (const call of calls.values()) call.pc.close();
    calls.clear();
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'leave' }));
  },
  async stats(peer) {
    const call = calls.get(peer);
    if (!call) return null;
    const report = await call.pc.getStats();
    const out = { video: null, audio: null, outVideo: null };
    const codec = (id) => { const c = id && report.get(id); return c ? c.mimeType : null; };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.video = { framesDecoded: s.framesDecoded || 0, width: s.frameWidth, height: s.frameHeight, codec: codec(s.codecId) };
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audio = { packetsReceived: s.packetsReceived || 0, samples: s.totalSamplesReceived || 0, concealed: s.concealedSamples || 0, codec: codec(s.codecId) };
      } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.outVideo = { framesEncoded: s.framesEncoded || 0, codec: codec(s.codecId) };
      }
    });
    return out;
  },
};

window.addEventListener('pagehide', () => window.hearth.leave());
