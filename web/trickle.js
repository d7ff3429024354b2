// rturn's trickle-ICE page (GET /): gathers ICE candidates with an editable list of STUN and
// TURN servers, pre-filled from /api/ice-servers, and says in one line whether it worked.
// In the spirit of the WebRTC samples' trickle-ice page. Plain browser JS, no dependencies.
"use strict";

(() => {
  /** Gathering that has not completed by then is stopped and reported. */
  const GATHER_TIMEOUT_MS = 40_000;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  // A room-bound token is presented with its room (?token=T&room=R); pass both on.
  const tokenRoom = params.get("room");
  const withToken = (path) => {
    if (!token) return path;
    const room = tokenRoom ? `&room=${encodeURIComponent(tokenRoom)}` : "";
    return `${path}?token=${encodeURIComponent(token)}${room}`;
  };

  const els = {
    servers: $("servers"),
    serversStatus: $("servers-status"),
    addServer: $("add-server"),
    resetServers: $("reset-servers"),
    policy: $("policy"),
    gather: $("gather"),
    stop: $("stop"),
    verdict: $("verdict"),
    candidates: $("candidates"),
    errors: $("errors"),
    roomForm: $("room-form"),
    roomName: $("room-name"),
    roomLink: $("room-link"),
  };

  // ---------------------------------------------------------------- ICE server rows

  /** Adds one editable row: a single URL with its (optional) username and credential. */
  function addServerRow({ url = "", username = "", credential = "" } = {}) {
    const row = document.createElement("div");
    row.className = "server";
    const input = (field, value, placeholder, label) => {
      const el = document.createElement("input");
      el.dataset.field = field;
      el.value = value;
      el.placeholder = placeholder;
      el.setAttribute("aria-label", label);
      el.spellcheck = false;
      el.autocomplete = "off";
      row.append(el);
      return el;
    };
    input("urls", url, "turn:host:3478?transport=udp", "Server URL");
    input("username", username, "username", "Username");
    input("credential", credential, "credential", "Credential");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon";
    remove.textContent = "×";
    remove.title = "Remove this server";
    remove.setAttribute("aria-label", "Remove this server");
    remove.addEventListener("click", () => row.remove());
    row.append(remove);
    els.servers.append(row);
    return row;
  }

  /** The rows as an RTCConfiguration.iceServers list; empty URLs are skipped. */
  function readServers() {
    const servers = [];
    for (const row of els.servers.querySelectorAll(".server")) {
      const get = (field) => row.querySelector(`[data-field="${field}"]`).value.trim();
      const url = get("urls");
      if (!url) continue;
      const server = { urls: url };
      if (/^turns?:/i.test(url)) {
        server.username = get("username");
        server.credential = get("credential");
      }
      servers.push(server);
    }
    return servers;
  }

  /** Replaces the rows with the server's own list, one row per URL. */
  async function loadServers() {
    els.serversStatus.textContent = "loading /api/ice-servers…";
    try {
      const response = await fetch(withToken("/api/ice-servers"), { cache: "no-store" });
      if (!response.ok) {
        // rturn explains a refusal in a line of text ("a token is required (?token=...)").
        const detail = (await response.text().catch(() => "")).trim().slice(0, 200);
        throw new Error(`HTTP ${response.status}${detail ? `: ${detail}` : ""}`);
      }
      const body = await response.json();
      els.servers.replaceChildren();
      for (const server of body.iceServers || []) {
        const urls = Array.isArray(server.urls) ? server.urls : [server.urls];
        for (const url of urls) {
          addServerRow({ url, username: server.username || "", credential: server.credential || "" });
        }
      }
      const ttl = Number(body.ttl);
      els.serversStatus.textContent = body.iceServers?.some((s) => s.credential)
        ? `loaded; TURN credentials valid for ${formatDuration(ttl)}`
        : "loaded; this server hands out no TURN credentials (no static-auth-secret)";
    } catch (err) {
      els.serversStatus.textContent =
        `could not load /api/ice-servers (${err.message}); enter servers by hand`;
    }
    if (!els.servers.querySelector(".server")) addServerRow();
  }

  function formatDuration(seconds) {
    if (!Number.isFinite(seconds) || seconds <= 0) return "an unknown time";
    if (seconds % 3600 === 0) return `${seconds / 3600} h`;
    if (seconds % 60 === 0) return `${seconds / 60} min`;
    return `${seconds} s`;
  }

  // ---------------------------------------------------------------- gathering

  /** The gathering in progress, or null. */
  let run = null;

  /** Fields of an RTCIceCandidate, from its attributes or, where missing, its SDP line. */
  function describe(candidate) {
    // candidate:FOUNDATION COMPONENT PROTOCOL PRIORITY ADDRESS PORT typ TYPE ...
    const parts = candidate.candidate.replace(/^a=/, "").split(/\s+/);
    const fromLine = {
      foundation: parts[0]?.split(":")[1],
      component: parts[1] === "1" ? "rtp" : parts[1] === "2" ? "rtcp" : parts[1],
      protocol: parts[2]?.toLowerCase(),
      priority: Number(parts[3]),
      address: parts[4],
      port: Number(parts[5]),
      type: parts[7],
    };
    return {
      foundation: candidate.foundation ?? fromLine.foundation,
      component: candidate.component ?? fromLine.component,
      protocol: candidate.protocol ?? fromLine.protocol,
      priority: candidate.priority ?? fromLine.priority,
      address: candidate.address ?? fromLine.address,
      port: candidate.port ?? fromLine.port,
      type: candidate.type ?? fromLine.type,
      relayProtocol: candidate.relayProtocol ?? "",
      url: candidate.url ?? "",
    };
  }

  /** "126 | 32542 | 255": type preference, local preference, 256 - component (RFC 8445 §5.1.2.1). */
  function formatPriority(p) {
    if (!Number.isFinite(p)) return "";
    const type = Math.floor(p / 2 ** 24);
    const local = Math.floor(p / 2 ** 8) % 2 ** 16;
    return `${type} | ${local} | ${p % 256}`;
  }

  function addCandidateRow(c) {
    els.candidates.querySelector("tr.placeholder")?.remove();
    const tr = document.createElement("tr");
    tr.dataset.type = c.type;
    const cells = [
      [String(c.time), "num"],
      [c.component === "rtp" ? "1" : c.component === "rtcp" ? "2" : String(c.component)],
      [c.type, "type"],
      [c.foundation],
      [c.protocol],
      [c.address, "mono clip"],
      [String(c.port), "num"],
      [formatPriority(c.priority), "num mono"],
      [c.relayProtocol, "relay-protocol"],
      [c.url, "url mono clip"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      if (cls === "type") {
        const badge = document.createElement("span");
        badge.className = "type";
        badge.textContent = text;
        td.append(badge);
      } else {
        td.textContent = text ?? "";
        if (cls) td.className = cls;
        if (cls?.includes("clip")) td.title = text ?? "";
      }
      tr.append(td);
    }
    tr.title = c.raw;
    els.candidates.append(tr);
    c.row = tr;
  }

  function setVerdict(status, text) {
    els.verdict.dataset.status = status;
    els.verdict.textContent = text;
  }

  async function gather() {
    if (run) finish("stopped");
    els.candidates.replaceChildren();
    const placeholder = document.createElement("tr");
    placeholder.className = "placeholder";
    placeholder.innerHTML = '<td class="empty" colspan="10">Waiting for candidates…</td>';
    els.candidates.append(placeholder);
    els.errors.replaceChildren();

    const iceServers = readServers();
    const policy = els.policy.value;
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy });
    } catch (err) {
      // A malformed URL is a SyntaxError from the constructor.
      setVerdict("fail", `the browser rejected the server list: ${err.message}`);
      return;
    }
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    run = { pc, iceServers, policy, started, candidates: [], errors: [], timer: 0 };
    const current = run;
    els.gather.disabled = true;
    els.stop.disabled = false;
    setVerdict("running", `gathering with ${iceServers.length} server URL(s), policy ${policy}…`);

    pc.addEventListener("icecandidate", (e) => {
      if (run !== current) return;
      if (!e.candidate) {
        finish("complete");
        return;
      }
      if (!e.candidate.candidate) return; // end-of-candidates for one m-line
      const c = describe(e.candidate);
      c.time = elapsed();
      c.raw = e.candidate.candidate;
      // Chromium also reports the server on the event (older API).
      if (!c.url && e.url) c.url = e.url;
      current.candidates.push(c);
      addCandidateRow(c);
    });
    pc.addEventListener("icecandidateerror", (e) => {
      if (run !== current) return;
      const error = {
        time: elapsed(),
        url: e.url || "",
        code: e.errorCode,
        text: e.errorText || "",
        local: e.address ? `${e.address}:${e.port}` : "",
      };
      current.errors.push(error);
      const li = document.createElement("li");
      li.dataset.code = String(error.code);
      li.innerHTML = `<span class="num"></span> ms · <code></code> · <b class="bad"></b> <span></span>`;
      const [time, url, code, text] = li.children;
      time.textContent = error.time;
      url.textContent = error.url || "(no URL)";
      code.textContent = error.code;
      text.textContent = error.text + (error.local ? ` (from ${error.local})` : "");
      els.errors.append(li);
    });
    pc.addEventListener("icegatheringstatechange", () => {
      if (run === current && pc.iceGatheringState === "complete") finish("complete");
    });

    run.timer = setTimeout(() => {
      if (run === current) finish("timeout");
    }, GATHER_TIMEOUT_MS);

    try {
      // One audio m-line is enough to gather: with BUNDLE and rtcp-mux, one component.
      pc.addTransceiver("audio", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
    } catch (err) {
      if (run === current) {
        finish("error");
        setVerdict("fail", `could not start gathering: ${err.message}`);
      }
    }
  }

  /** Ends the current run: `how` is complete, timeout, stopped or error. */
  async function finish(how) {
    const current = run;
    if (!current) return;
    run = null;
    clearTimeout(current.timer);
    current.finishedAt = Math.round(performance.now() - current.started);
    els.gather.disabled = false;
    els.stop.disabled = true;
    if (!current.candidates.length) {
      els.candidates.querySelector("tr.placeholder td").textContent = "No candidates.";
    }
    await fillFromStats(current);
    current.pc.close();
    // A new run may have started meanwhile; its own status line wins.
    if (how !== "error" && !run) setVerdict(...verdict(current, how));
  }

  /** Relay protocol and server URL, when the candidate did not carry them, from getStats. */
  async function fillFromStats(current) {
    if (current.candidates.every((c) => c.type !== "relay" || (c.relayProtocol && c.url))) return;
    try {
      const stats = await current.pc.getStats();
      stats.forEach((s) => {
        if (s.type !== "local-candidate") return;
        for (const c of current.candidates) {
          if (c.address !== (s.address ?? s.ip) || c.port !== s.port || c.type !== s.candidateType) continue;
          if (!c.relayProtocol && s.relayProtocol) {
            c.relayProtocol = s.relayProtocol;
            c.row.querySelector(".relay-protocol").textContent = s.relayProtocol;
          }
          if (!c.url && s.url) {
            c.url = s.url;
            c.row.querySelector(".url").textContent = s.url;
          }
        }
      });
    } catch {
      // stats are a nicety here; the candidates themselves are already shown
    }
  }

  /** [status, text] for the verdict line. */
  function verdict({ candidates, errors, iceServers, policy, finishedAt }, how) {
    const count = (type) => candidates.filter((c) => c.type === type).length;
    const summary = ["host", "srflx", "prflx", "relay"]
      .map((t) => [t, count(t)])
      .filter(([, n]) => n > 0)
      .map(([t, n]) => `${n} ${t}`)
      .join(", ");
    const ending = {
      complete: `gathering complete in ${finishedAt} ms`,
      timeout: `gathering stopped: not complete after ${GATHER_TIMEOUT_MS / 1000} s`,
      stopped: `stopped after ${finishedAt} ms`,
    }[how];
    const turnUrls = iceServers.map((s) => s.urls).filter((u) => /^turns?:/i.test(u));
    const stunUrls = iceServers.map((s) => s.urls).filter((u) => /^stuns?:/i.test(u));
    const firstError = errors.length
      ? `${errors[0].url || "a server"} answered ${errors[0].code} ${errors[0].text}`.trim()
      : "";

    const relays = candidates.filter((c) => c.type === "relay");
    if (relays.length) {
      const first = relays[0];
      const via = first.url ? ` via ${first.url}` : "";
      const proto = first.relayProtocol ? ` (${first.relayProtocol} to the server)` : "";
      const more = candidates.length > 1 ? `; ${summary}` : "";
      return ["ok", `relay candidate${via} in ${first.time} ms${proto}${more}; ${ending}`];
    }
    if (how === "stopped") return ["idle", `${summary || "no candidates"}; ${ending}`];
    if (policy === "relay" || turnUrls.length) {
      let why;
      if (!turnUrls.length) why = "there is no turn: URL in the server list";
      else if (firstError) why = firstError;
      else if (how === "timeout") why = "the TURN server did not answer";
      else why = "the TURN server gave none and reported no error";
      return ["fail", `no relay candidate: ${why}; ${summary ? `${summary}; ` : ""}${ending}`];
    }
    if (!candidates.length) {
      return ["fail", `no candidates at all${firstError ? `: ${firstError}` : ""}; ${ending}`];
    }
    if (stunUrls.length && !count("srflx")) {
      // On a machine whose address is public (or loopback), srflx equals host and is dropped.
      const why = firstError || "the reflexive address equals a host address, or the STUN server did not answer";
      return ["warn", `no srflx candidate (${why}); ${summary}; ${ending}`];
    }
    return ["ok", `${summary}; ${ending}`];
  }

  // ---------------------------------------------------------------- wiring

  els.addServer.addEventListener("click", () => addServerRow().querySelector("input").focus());
  els.resetServers.addEventListener("click", loadServers);
  els.gather.addEventListener("click", gather);
  els.stop.addEventListener("click", () => finish("stopped"));

  const roomHref = (name) => withToken(`/room/${encodeURIComponent(name)}`);
  els.roomLink.href = roomHref("demo");
  els.roomForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = els.roomName.value.trim();
    if (name) location.href = roomHref(name);
  });

  loadServers();
})();
