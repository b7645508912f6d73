// The gateway's own decision on client frames, for tests/differential.rs: each input line is
// {"i": n, "text": "<frame>"}; each output line says what openclaw's own code makes of it,
// with the functions imported from its installed dist/ (no copy of its logic here):
//   JSON.parse, then validateRequestFrame (its RequestFrameSchema, AJV);
//   authorizeOperatorScopesForMethod for each scope set below, plus the `agent` handler's own
//   reset check (prepareAgentContentPhase trims the message, runAgentResetPhase matches
//   AGENT_SESSION_RESET_COMMAND_RE and requires admin);
//   for chat.send, the session it resolves (loadChatSendSessionContext's steps:
//   resolveRequestedSessionAgentId, the `global` load key, resolveSessionStoreIdentity).
//
// Usage: node oracle.mjs <openclaw dist dir>   (stdin: JSON lines; stdout: JSON lines)
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const dist = process.argv[2];
if (!dist) {
  console.error("usage: node oracle.mjs <openclaw dist dir>");
  process.exit(2);
}

// The dist is bundled: find each function by its source name in the export lists of the
// chunks whose file name starts with `prefix`.
const files = readdirSync(dist);
async function load(prefix, name) {
  for (const f of files.filter((f) => f.startsWith(prefix) && f.endsWith(".mjs"))) {
    const text = readFileSync(join(dist, f), "utf8");
    const m = text.match(new RegExp(`export \\{[^}]*\\b${name} as ([\\w$]+)`));
    if (m) return (await import(join(dist, f)))[m[1]];
  }
  throw new Error(`${name} not found in ${dist}/${prefix}*.mjs`);
}

const validateRequestFrame = await load("src-", "validateRequestFrame");
const authorize = await load("method-scopes-", "authorizeOperatorScopesForMethod");
const isClassified = await load("method-scopes-", "isCoreGatewayMethodClassified");
const isNodeRole = await load("method-scopes-", "isNodeRoleMethod");
const RESET_RE = await load("method-scopes-", "AGENT_SESSION_RESET_COMMAND_RE");
const requestedAgent = await load("session-request-agent-", "resolveRequestedSessionAgentId");
const storeIdentity = await load("session-store-key-", "resolveSessionStoreIdentity");
const mainSessionKey = await load("main-session-", "resolveAgentMainSessionKey");
const chatText = await load("chat-text-normalization-", "normalizeOptionalChatText");

// Keep in step with SCOPE_SETS in differential.rs.
const SCOPE_SETS = [
  [],
  ["operator.read"],
  ["operator.write"],
  ["operator.read", "operator.write"],
  ["operator.admin"],
  ["operator.read", "operator.talk.secrets"],
  ["operator.pairing"],
  ["operator.write", "operator.pairing"],
  ["operator.approvals"],
];
const cfg = {};
// Strings go out as UTF-16 code units: a lone surrogate has no UTF-8 form to print.
const units = (s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
const isRecord = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function decide(method, params, scopes) {
  const a = authorize(method, scopes, params);
  if (!a.allowed) return a.missingScope;
  // The handler's own check, after its trim().
  if (method === "agent" && isRecord(params) && typeof params.message === "string") {
    if (RESET_RE.test(params.message.trim()) && !scopes.includes("operator.admin")) {
      return "operator.admin";
    }
  }
  return null;
}

function chatSession(params) {
  if (!isRecord(params) || typeof params.sessionKey !== "string") return { none: true };
  if (params.agentId !== undefined && typeof params.agentId !== "string") return { none: true };
  try {
    const key = params.sessionKey;
    const agent = requestedAgent(cfg, key, chatText(params.agentId));
    if (!agent.ok) return { refused: agent.error.message.toWellFormed() };
    const loadKey =
      cfg.session?.scope !== "global" && key.trim().toLowerCase() === "global"
        ? mainSessionKey({ cfg, agentId: agent.agentId })
        : key;
    return { key: units(storeIdentity({ cfg, sessionKey: loadKey, agentId: agent.agentId }).canonicalKey) };
  } catch (e) {
    return { refused: String(e).toWellFormed() };
  }
}

function judge(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "not_json" };
  }
  if (!validateRequestFrame(parsed)) {
    // The gateway answers with `parsed?.id ?? "invalid"`.
    return { kind: "not_request", hasId: (parsed?.id ?? null) !== null };
  }
  const { id, method, params } = parsed;
  const out = { kind: "request", id: units(id), method: units(method) };
  if (isNodeRole(method)) out.class = "node_role";
  else if (!isClassified(method)) out.class = "unknown";
  else out.decisions = SCOPE_SETS.map((s) => decide(method, params, s));
  if (method === "chat.send") out.chat = chatSession(params);
  return out;
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line) continue;
  const { i, text } = JSON.parse(line);
  let out;
  try {
    out = judge(text);
  } catch (e) {
    out = { kind: "oracle_error", error: String(e).toWellFormed() };
  }
  process.stdout.write(JSON.stringify({ i, ...out }) + "\n");
}
