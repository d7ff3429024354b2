// rturn's video room (GET /room/NAME): joins NAME on the signaling relay at /ws and connects
// to every other peer in it directly (a mesh: one RTCPeerConnection per remote peer), with
// the STUN/TURN servers the join reply hands out. Video tiles, a chat over data channels,
// and per-peer connection state including whether the selected ICE pair is relayed.
//
// Negotiation is "perfect negotiation" (W3C webrtc-pc §10.7): the newcomer offers to the
// peers already in the room, and later renegotiation (a camera granted late, an ICE restart)
// can start on either side without glare. ?policy=relay (the "relay only" switch) forces
// TURN, ?token=... is passed on to /ws. A failed connection says why (the TURN errors the
// browser reported) and is restarted with exponential backoff, a few times at most; every
// connection is closed when the page goes away. Plain browser JS, no dependencies.
"use strict";

(() => {
  const PING_INTERVAL_MS = 20_000;
  const STATS_INTERVAL_MS = 2_000;
  /** How long joining waits for the camera prompt before going ahead without media. */
  const MEDIA_WAIT_MS = 1_500;
  const RECONNECT_MIN_MS = 1_000;
  const RECONNECT_MAX_MS = 30_000;
  /** ICE restarts after a failure: first after this long, doubling, at most this often. */
  const RESTART_MIN_MS = 2_000;
  const RESTART_MAX_MS = 60_000;
  const RESTART_MAX_TRIES = 6;
  const MAX_CHAT_LEN = 2_000;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const policy = params.get("policy") === "relay" ? "relay" : "all";
  const room = roomFromPath() || params.get("room") || "demo";

  const els = {
    status: $("status"),
    roomName: $("room-name"),
    media: $("media"),
    mic: $("mic"),
    camera: $("camera"),
    videos: $("videos"),
    localTile: $("local-tile"),
    localVideo: $("local-video"),
    localCaption: $("local-caption"),
    relayOnly: $("relay-only"),
    peers: $("peers"),
    me: $("me"),
    chatLog: $("chat-log"),
    chatForm: $("chat-form"),
    chatInput: $("chat-input"),
  };

  /** The signaling socket, our peer ID in the room, and the ICE servers it gave us. */
  let ws = null;
  let me = null;
  let iceServers = [];
  let pingTimer = 0;
  let reconnectDelay = RECONNECT_MIN_MS;
  let lastPing = 0;
  /** Camera and microphone, or null for data only. */
  let localStream = null;
  /** Remote peers by ID. */
  const peers = new Map();

  function roomFromPath() {
    const m = location.pathname.match(/^\/room\/([^/]+)\/?$/);
    if (!m) return "";
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return m[1];
    }
  }

  const short = (id) => String(id).slice(0, 8);

  // ---------------------------------------------------------------- signaling socket

  // With ?token=, the token may be bound to this room (presented with &room=) or good in any
  // room (presented alone); the page cannot tell, so it tries the first, then the second.
  const wsPaths = token
    ? [
        `/ws?token=${encodeURIComponent(token)}&room=${encodeURIComponent(room)}`,
        `/ws?token=${encodeURIComponent(token)}`,
      ]
    : ["/ws"];
  let wsPath = 0;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    setStatus("connecting", "connecting…");
    const socket = new WebSocket(`${scheme}//${location.host}${wsPaths[wsPath]}`);
    ws = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      reconnectDelay = RECONNECT_MIN_MS;
      setStatus("open", "joining…");
      send({ type: "join", room });
      pingTimer = setInterval(() => {
        lastPing = performance.now();
        send({ type: "ping" });
      }, PING_INTERVAL_MS);
    });
    socket.addEventListener("message", (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        console.warn("rturn: signaling frame is not JSON:", e.data);
        return;
      }
      onSignal(msg);
    });
    socket.addEventListener("close", (e) => {
      if (ws !== socket) return;
      clearInterval(pingTimer);
      outbox.length = 0; // addressed to peers of this session, which are gone
      for (const id of [...peers.keys()]) removePeer(id);
      me = null;
      els.me.textContent = "not joined";
      if (!opened && wsPath + 1 < wsPaths.length) {
        wsPath += 1; // refused before opening: try the other way of presenting the token
        connect();
        return;
      }
      if (!opened) wsPath = 0;
      const why = !opened
        ? `could not connect${token ? "; the token may be wrong or expired" : "; the server may be down or want a ?token="}`
        : e.reason || (e.code === 1000 ? "closed" : `code ${e.code}`);
      setStatus("closed", `disconnected (${why}); retrying in ${Math.round(reconnectDelay / 1000)} s`);
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    });
  }

  // The server allows a burst of messages and then a steady rate per connection (default 50
  // a second); a newcomer in a busy room sends an offer and a dozen candidates per peer at
  // once, so outgoing messages are paced to stay well inside that instead of being refused.
  const SEND_BURST = 20;
  const SEND_PER_SECOND = 20;
  let sendTokens = SEND_BURST;
  let sendRefilled = performance.now();
  let sendTimer = 0;
  const outbox = [];

  function send(msg) {
    outbox.push(JSON.stringify(msg));
    flush();
  }

  function flush() {
    const now = performance.now();
    sendTokens = Math.min(SEND_BURST, sendTokens + ((now - sendRefilled) / 1000) * SEND_PER_SECOND);
    sendRefilled = now;
    while (outbox.length && sendTokens >= 1) {
      const text = outbox.shift();
      if (ws?.readyState === WebSocket.OPEN) ws.send(text);
      sendTokens -= 1;
    }
    if (outbox.length && !sendTimer) {
      sendTimer = setTimeout(() => {
        sendTimer = 0;
        flush();
      }, 1000 / SEND_PER_SECOND);
    }
  }

  function setStatus(state, text) {
    els.status.dataset.state = state;
    els.status.textContent = text;
  }

  function onSignal(msg) {
    switch (msg.type) {
      case "peers": {
        me = msg.you;
        iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
        document.body.dataset.me = me;
        els.me.dataset.peer = me;
        els.me.textContent = `you are ${short(me)}${policy === "relay" ? " · relay only" : ""}`;
        els.me.title = me;
        els.localCaption.textContent = `you · ${short(me)}`;
        setStatus("open", "joined");
        if (policy === "relay" && !iceServers.some((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)))) {
          systemLine("relay only, but this server hands out no TURN server: peers cannot connect", "error");
        }
        for (const id of msg.peers || []) if (id !== me) addPeer(id, true);
        systemLine(msg.peers?.length
          ? `joined "${room}" with ${msg.peers.length} other peer(s)`
          : `joined "${room}": nobody else here yet`);
        break;
      }
      case "new_peer":
        if (msg.id !== me && !peers.has(msg.id)) {
          addPeer(msg.id, false);
          systemLine(`${short(msg.id)} joined`);
        }
        break;
      case "remove_peer":
        if (peers.has(msg.id)) {
          removePeer(msg.id);
          systemLine(`${short(msg.id)} left`);
        }
        break;
      case "offer":
      case "answer":
      case "candidate": {
        if (!msg.from || msg.from === me) return;
        // An offer may come before new_peer if messages cross; the sender is then new.
        const peer = peers.get(msg.from) || (msg.type === "offer" ? addPeer(msg.from, false) : null);
        if (!peer) return;
        // One message at a time per peer, in arrival order.
        peer.queue = peer.queue.then(() => onPeerSignal(peer, msg)).catch((err) => {
          console.warn(`rturn: ${msg.type} from ${msg.from}:`, err);
        });
        break;
      }
      case "pong":
        if (lastPing) els.status.title = `signaling round trip ${Math.round(performance.now() - lastPing)} ms`;
        break;
      case "error":
        console.warn("rturn: server error", msg);
        systemLine(`server: ${msg.code}: ${msg.message}`, "error");
        if (["room_full", "unauthorized"].includes(msg.code) && !me) {
          setStatus("closed", msg.code === "room_full" ? "room is full" : "not authorized");
        }
        break;
      default:
        console.debug("rturn: ignored signaling message", msg);
    }
  }

  // ---------------------------------------------------------------- peers

  function addPeer(id, initiator) {
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy });
    const peer = {
      id,
      pc,
      // The peer already in the room is the polite one: it yields when offers cross.
      polite: !initiator,
      // The newcomer offers first; the other side only after it has answered once.
      canOffer: initiator,
      makingOffer: false,
      ignoreOffer: false,
      queue: Promise.resolve(),
      pendingCandidates: [],
      route: "",
      statsTimer: 0,
      // TURN errors the browser reported for this connection (icecandidateerror), the
      // reason shown when it fails, and the pending ICE restart.
      iceErrors: [],
      failure: "",
      restartTimer: 0,
      restartDelay: RESTART_MIN_MS,
      restarts: 0,
      // Negotiated channel with a fixed id: both sides have it at once, no ondatachannel.
      dc: pc.createDataChannel("chat", { negotiated: true, id: 0 }),
      ...peerElements(id),
    };
    peers.set(id, peer);

    if (localStream) {
      for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    } else if (initiator) {
      // Offer to receive the other side's camera even if we have none. (The answering side
      // gets its transceivers from the offer.)
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
    }

    pc.addEventListener("negotiationneeded", async () => {
      if (!peer.canOffer) return; // fires again after the first answer if still needed
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        send({ type: "offer", to: id, sdp: pc.localDescription.sdp });
      } catch (err) {
        console.warn(`rturn: offer to ${id}:`, err);
      } finally {
        peer.makingOffer = false;
      }
    });
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (candidate && candidate.candidate) send({ type: "candidate", to: id, candidate: candidate.toJSON() });
    });
    pc.addEventListener("icecandidateerror", (e) => {
      // 701 (no answer from that server) is routine for a STUN URL of the other family.
      if (e.errorCode === 701 && !/^turns?:/.test(e.url || "")) return;
      peer.iceErrors.push({ code: e.errorCode, text: e.errorText || "", url: e.url || "" });
      if (peer.iceErrors.length > 8) peer.iceErrors.shift();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") onFailed(peer);
      if (pc.connectionState === "connected") {
        clearTimeout(peer.restartTimer);
        peer.restartTimer = 0;
        peer.restartDelay = RESTART_MIN_MS;
        peer.restarts = 0;
        peer.failure = "";
        peer.iceErrors = [];
      }
      refreshPeer(peer);
    });
    pc.addEventListener("track", ({ track, streams }) => {
      const video = peer.tile.querySelector("video");
      const stream = streams[0] || video.srcObject || new MediaStream();
      if (!streams[0]) stream.addTrack(track);
      if (video.srcObject !== stream) video.srcObject = stream;
      if (track.kind === "video") {
        const shown = () => peer.tile.classList.toggle("has-video", !track.muted && track.readyState === "live");
        track.addEventListener("mute", shown);
        track.addEventListener("unmute", shown);
        track.addEventListener("ended", shown);
        shown();
      }
    });

    peer.dc.addEventListener("open", () => refreshPeer(peer));
    peer.dc.addEventListener("close", () => refreshPeer(peer));
    peer.dc.addEventListener("message", ({ data }) => {
      let text;
      try {
        text = JSON.parse(data).text;
      } catch {
        text = null;
      }
      if (typeof text === "string" && text) chatLine(id, text.slice(0, MAX_CHAT_LEN));
    });

    peer.statsTimer = setInterval(() => refreshPeer(peer), STATS_INTERVAL_MS);
    refreshPeer(peer);
    return peer;
  }

  /**
   * A connection that failed: say why, and (on the impolite side, which restarts for both)
   * try an ICE restart after a delay that doubles each time, a few times at most.
   */
  function onFailed(peer) {
    peer.failure = failureReason(peer);
    systemLine(`${short(peer.id)}: connection failed: ${peer.failure}`, "error");
    if (peer.polite || peer.restartTimer) return;
    if (peer.restarts >= RESTART_MAX_TRIES) {
      systemLine(`${short(peer.id)}: gave up after ${peer.restarts} ICE restarts`, "error");
      return;
    }
    const delay = peer.restartDelay;
    peer.restartDelay = Math.min(peer.restartDelay * 2, RESTART_MAX_MS);
    peer.restartTimer = setTimeout(() => {
      peer.restartTimer = 0;
      if (peers.get(peer.id) !== peer || peer.pc.connectionState !== "failed") return;
      peer.restarts += 1;
      peer.iceErrors = [];
      peer.pc.restartIce();
    }, delay);
  }

  /** Why ICE failed, from the TURN errors the browser reported (RFC 8656 error codes). */
  function failureReason(peer) {
    const meaning = {
      401: "the TURN credentials were refused",
      403: "the TURN server's peer rules refuse that address (relay-ip private or loopback, or a peer the server does not allow)",
      437: "the allocation was lost (timed out or deleted)",
      438: "stale nonce",
      486: "TURN allocation quota reached",
      508: "the TURN server has no free relay port",
      701: "no answer from the TURN server",
    };
    const seen = new Map();
    for (const e of peer.iceErrors) seen.set(e.code, e);
    if (seen.size) {
      return [...seen.values()]
        .map((e) => `${e.code}${meaning[e.code] ? ` (${meaning[e.code]})` : e.text ? ` ${e.text}` : ""}${e.url ? ` at ${e.url}` : ""}`)
        .join("; ");
    }
    if (policy === "relay") {
      return "no relayed pair worked: the TURN server refused relaying between the two relay addresses " +
        "(403 from its peer rules: denied-peer-ip, or another server that refuses private or loopback peers)";
    }
    return "no candidate pair worked (no TURN server, or the network blocks UDP)";
  }

  /** An offer, answer or candidate from `peer`, handled as perfect negotiation says. */
  async function onPeerSignal(peer, msg) {
    const pc = peer.pc;
    if (msg.type === "candidate") {
      if (!msg.candidate) return;
      if (!pc.remoteDescription) {
        peer.pendingCandidates.push(msg.candidate);
        return;
      }
      try {
        await pc.addIceCandidate(msg.candidate);
      } catch (err) {
        if (!peer.ignoreOffer) throw err;
      }
      return;
    }
    if (typeof msg.sdp !== "string") throw new Error(`${msg.type} without an sdp`);
    const collision = msg.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
    peer.ignoreOffer = !peer.polite && collision;
    if (peer.ignoreOffer) return;
    await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp }); // rolls back our offer if needed
    for (const candidate of peer.pendingCandidates.splice(0)) {
      await pc.addIceCandidate(candidate).catch((err) => console.warn("rturn: queued candidate:", err));
    }
    if (msg.type === "offer") {
      peer.canOffer = true;
      await pc.setLocalDescription();
      send({ type: "answer", to: peer.id, sdp: pc.localDescription.sdp });
    }
  }

  function removePeer(id) {
    const peer = peers.get(id);
    if (!peer) return;
    peers.delete(id);
    clearInterval(peer.statsTimer);
    clearTimeout(peer.restartTimer);
    peer.pc.close();
    peer.li.remove();
    peer.tile.remove();
  }

  /** The peer's entry in #peers and its video tile. */
  function peerElements(id) {
    const li = document.createElement("li");
    li.dataset.peer = id;
    li.dataset.state = "new";
    li.dataset.route = "";
    const name = document.createElement("span");
    name.className = "id";
    name.textContent = short(id);
    name.title = id;
    const state = document.createElement("span");
    state.className = "state";
    li.append(name, state);
    els.peers.append(li);

    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.peer = id;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    const none = document.createElement("div");
    none.className = "novideo";
    none.textContent = "no video";
    const caption = document.createElement("figcaption");
    tile.append(video, none, caption);
    els.videos.append(tile);
    return { li, tile };
  }

  /** Connection state and, once connected, the selected pair's candidate types. */
  async function refreshPeer(peer) {
    const pc = peer.pc;
    const state = pc.connectionState;
    if (state === "connected") {
      const pair = await selectedPair(pc);
      if (peers.get(peer.id) !== peer) return;
      peer.route = pair ? `${pair.local}/${pair.remote}` : "";
      peer.detail = pair;
    } else if (state !== "disconnected") {
      peer.route = "";
      peer.detail = null;
    }
    const parts = [state];
    // The reason stays in view while an ICE restart tries again (cleared once connected).
    if (state === "failed" && peer.failure) parts.push(peer.failure);
    else if (state !== "connected" && peer.failure) parts.push(`retrying; last failure: ${peer.failure}`);
    if (peer.route) {
      const d = peer.detail;
      parts.push(peer.route + (d.protocol ? ` (${d.protocol})` : ""));
      if (Number.isFinite(d.rtt)) parts.push(`${Math.round(d.rtt * 1000)} ms`);
    }
    if (state === "connected" && peer.dc.readyState !== "open") parts.push(`chat ${peer.dc.readyState}`);
    const text = parts.join(" · ");
    peer.li.dataset.state = state;
    peer.li.dataset.route = peer.route;
    peer.li.querySelector(".state").textContent = text;
    const caption = peer.tile.querySelector("figcaption");
    caption.textContent = `${short(peer.id)} · ${text}`;
    caption.title = caption.textContent;
  }

  /**
   * The selected ICE candidate pair: local and remote candidate types ("relay", "host", …),
   * the protocol to the TURN server for a relayed local side, and the round trip time.
   */
  async function selectedPair(pc) {
    let stats;
    try {
      stats = await pc.getStats();
    } catch {
      return null;
    }
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) {
      stats.forEach((s) => {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
      });
    }
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    if (!local || !remote) return null;
    return {
      local: local.candidateType,
      remote: remote.candidateType,
      protocol: local.candidateType === "relay" ? local.relayProtocol : local.protocol,
      rtt: pair.currentRoundTripTime,
    };
  }

  // ---------------------------------------------------------------- media

  /** Camera and microphone if granted; otherwise data only, saying why. */
  async function startMedia() {
    if (!navigator.mediaDevices?.getUserMedia) {
      setMedia("data only: no camera access on this page (it needs https or localhost)");
      return;
    }
    const video = { width: { ideal: 640 }, height: { ideal: 480 } };
    let firstError = null;
    for (const constraints of [{ audio: true, video }, { video }, { audio: true }]) {
      try {
        localStream = await navigator.mediaDevices.getUserMedia(constraints);
        break;
      } catch (err) {
        firstError ??= err;
        if (err.name === "NotAllowedError" || err.name === "SecurityError") break;
      }
    }
    if (!localStream) {
      const why = {
        NotAllowedError: "camera and microphone permission denied",
        SecurityError: "camera and microphone blocked on this page",
        NotFoundError: "no camera or microphone found",
        NotReadableError: "the camera is in use by another program",
      }[firstError?.name] || `no camera (${firstError?.name || "unknown error"})`;
      setMedia(`data only: ${why}; chat still works`);
      return;
    }
    const audio = localStream.getAudioTracks()[0];
    const cam = localStream.getVideoTracks()[0];
    setMedia([cam && "camera", audio && "microphone"].filter(Boolean).join(" and ") + " on");
    els.localVideo.srcObject = localStream;
    els.localTile.classList.toggle("has-video", Boolean(cam));
    setupToggle(els.mic, audio);
    setupToggle(els.camera, cam, () => els.localTile.classList.toggle("has-video", cam.enabled));
    // Peers that exist already get the tracks now: negotiationneeded renegotiates.
    for (const peer of peers.values()) {
      for (const track of localStream.getTracks()) {
        const reuse = peer.pc.getTransceivers().find(
          (t) => t.receiver.track.kind === track.kind && !t.sender.track && !t.stopped,
        );
        if (reuse) {
          reuse.sender.replaceTrack(track);
          reuse.sender.setStreams?.(localStream);
          reuse.direction = "sendrecv";
        } else {
          peer.pc.addTrack(track, localStream);
        }
      }
    }
  }

  function setupToggle(button, track, after = () => {}) {
    if (!track) return;
    button.disabled = false;
    button.addEventListener("click", () => {
      track.enabled = !track.enabled;
      button.setAttribute("aria-pressed", String(track.enabled));
      after();
    });
  }

  function setMedia(text) {
    els.media.textContent = text;
  }

  // ---------------------------------------------------------------- chat

  function chatLine(from, text) {
    const li = document.createElement("li");
    li.dataset.from = from;
    if (from === me) li.className = "mine";
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from === me ? "you" : short(from);
    who.title = from;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(who, body);
    appendLog(li);
  }

  function systemLine(text, kind = "system") {
    const li = document.createElement("li");
    li.className = kind === "error" ? "system bad" : "system";
    li.textContent = text;
    appendLog(li);
  }

  function appendLog(li) {
    const log = els.chatLog;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    log.append(li);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  els.chatForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = els.chatInput.value.trim().slice(0, MAX_CHAT_LEN);
    if (!text) return;
    els.chatInput.value = "";
    let delivered = 0;
    for (const peer of peers.values()) {
      if (peer.dc.readyState === "open") {
        peer.dc.send(JSON.stringify({ text }));
        delivered += 1;
      }
    }
    chatLine(me ?? "you", text);
    if (!delivered) systemLine("not delivered: no peer is connected yet");
  });

  // ---------------------------------------------------------------- start

  document.title = `rturn · ${room}`;
  els.roomName.textContent = room;
  // The relay-only switch reloads the room with or without ?policy=relay (a connection's
  // ICE transport policy is fixed when it is made).
  els.relayOnly.checked = policy === "relay";
  els.relayOnly.addEventListener("change", () => {
    const url = new URL(location.href);
    if (els.relayOnly.checked) url.searchParams.set("policy", "relay");
    else url.searchParams.delete("policy");
    location.assign(url);
  });
  // Leaving the page ends every connection now, so the TURN allocations are released at
  // once instead of waiting out their lifetimes.
  window.addEventListener("pagehide", () => {
    for (const id of [...peers.keys()]) removePeer(id);
    if (ws) {
      const socket = ws;
      ws = null;
      socket.close(1000, "left");
    }
  });
  if (token) {
    for (const a of document.querySelectorAll('a[href="/"]')) a.href = `/?token=${encodeURIComponent(token)}`;
  }
  const media = startMedia();
  // Join once the camera is settled, or soon anyway: a prompt nobody answers must not
  // keep us out of the room (tracks granted later are added by renegotiation).
  Promise.race([media, new Promise((r) => setTimeout(r, MEDIA_WAIT_MS))]).then(connect);
})();
